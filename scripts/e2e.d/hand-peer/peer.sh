#!/usr/bin/env bash
# A node configured by hand (ip xfrm, curl, jq, derive.py; no agent), step by step as docs/interop.md describes
# it: the page prints this file, and scripts/e2e.d/H checks that the two agree and runs it against real agents.
#   PEER_CONF=FILE peer.sh register | install KEYFILE | advertise KEYFILE | sync | heartbeat
# Run as root in the node's network namespace. FILE sets NAME, UNDERLAY (this node's tunnel endpoint address),
# POD_CIDR, REGISTRY (the registry's base URL), CREDENTIAL_FILE and STATE (a directory); optionally BOOT_ID_FILE,
# CURL_OPTIONS (extra options your registry connection needs), REQID and PRIORITY (local: not on the wire).
set -euo pipefail; shopt -s nullglob
HERE=${0%/*}
source "${PEER_CONF:-/etc/hand-peer.conf}"
: "${BOOT_ID_FILE:=/proc/sys/kernel/random/boot_id}" "${CURL_OPTIONS:=}" "${REQID:=100}" "${PRIORITY:=100}"
FAMILY=$([[ $UNDERLAY == *:* ]] && echo ipv6 || echo ipv4)
[ -d "$STATE/keys" ] || mkdir -p "$STATE/keys"
exec 9>>"$STATE/lock"; flock 9   # one step at a time (the heartbeat runs beside the others)

api() {  # api METHOD PATH [JSON]: one registry request; prints the answer; fails on an error status
  curl -sS --fail-with-body --max-time 10 $CURL_OPTIONS -X "$1" -H "X-Registry-Node: $NAME" \
    -H "Authorization: Bearer $(<"$CREDENTIAL_FILE")" ${3:+-H "Content-Type: application/json" --data "$3"} \
    "$REGISTRY$2"
}
publish() {  # publish JQ: PUT our stored record with JQ applied and a larger sequence; keep the answer
  local body; body=$(jq -c --argjson ms "$(date +%s%3N)" "$1 | del(.revision, .heartbeatMillis)
    | .sequence = ([\$ms, .sequence + 1] | max)" "$STATE/record.json")
  api PUT "/v1/nodes/$NAME" "$body" >"$STATE/record.new"; mv "$STATE/record.new" "$STATE/record.json"
}
mine() {  # our stored record: ME (nodeID) BOOT KEY (spi) ENC (encryptSpi) ACK (xfrmRevision) FP REV (0: absent)
  IFS=$'\x1f' read -r ME BOOT KEY ENC ACK FP REV < <(jq -r '[.nodeID, .bootID, .spi // 0, .encryptSpi // 0,
    .xfrmRevision, .keyFingerprint, .revision] | map(tostring) | join("\u001f")' "$STATE/record.json")
}
fetch() {  # the live records; PEERS: one line per peer we can reach, with the fields the steps read
  api GET /v1/nodes >"$STATE/list.json"
  PEERS=$(jq -r --arg me "$NAME" --arg f "$FAMILY" '.records[] | select(.name != $me and .nodeID != 0 and .[$f])
    | [.name, .nodeID, .[$f], .bootID, .spi // 0, .encryptSpi // 0, .xfrmRevision, .keyFingerprint,
       (.podCIDRs | join(" "))] | map(tostring) | join("\u001f")' "$STATE/list.json")
}
each_peer() { [ -z "$PEERS" ] || printf '%s\n' "$PEERS"; }   # while IFS=$'\x1f' read -r name id addr boot spi…
kernel() {  # what is installed: SAS=" DST/SPI …", POLICIES=" DIR|SRC|DST|TEMPLATE-SPI …" (- for none or any)
  SAS=" $(ip xfrm state | awk '/^src/ {d = $4} $2 == "esp" && $3 == "spi" {printf "%s/%s ", d, $4}')"
  POLICIES=" $(ip xfrm policy | awk 'function out() {if (s != "") printf "%s|%s|%s|%s ", dir, s, d, spi}
    /^src/ {out(); s = $2; d = $4; spi = "-"} $1 == "dir" {dir = $2} $3 == "spi" {spi = $4} END {out()}')"
}
spi() { printf '0x%08x' $(($1 << 16 | $2)); }      # spi KEY SENDER_NODE_ID: the SPI on the wire
newer() { local d=$((($2 - $1 + 15) % 15)); ((d >= 1 && d <= 7)); }  # newer A B: key B is later than key A
older() { if newer "$1" "$2"; then echo "$1"; else echo "$2"; fi; }
any() { [[ $1 == *:* ]] && echo ::/0 || echo 0.0.0.0/0; }   # the whole family of a prefix
derive() { python3 -S "$HERE/derive.py" "$@"; }

register() {  # step 1: publish without spi; the registry assigns the node ID (nodeID 0 asks for one)
  local boot; boot=$(tr -d ' \t\r\n' <"$BOOT_ID_FILE")   # without its newline, as the agent publishes its own
  jq -n --arg n "$NAME" --arg f "$FAMILY" --arg a "$UNDERLAY" --arg p "$POD_CIDR" --arg b "$boot" \
    '{name: $n, nodeID: 0, ($f): $a, podCIDRs: [$p], bootID: $b, keyFingerprint: "", xfrmRevision: 0}' \
    >"$STATE/record.json"
  publish .; mine
  echo "$REV" >"$STATE/registered"   # peers know us once their xfrmRevision reaches this revision
  echo '{}' >"$STATE/seen.json"
  echo "$ME"
}

install() {  # step 2 (R1): the key of KEYFILE, for every peer
  local k fp; read -r k fp < <(derive "$1"); [ "$1" -ef "$STATE/keys/$k" ] || cp "$1" "$STATE/keys/$k"
  fetch; mine; kernel; sas "$k" "$fp"
}
sas() {  # sas KEY FINGERPRINT: IN and OUT SA with every peer; its OUT (blocking) and IN/FWD policies if missing
  local k=$1 fp=$2 name id addr boot pspi penc pack pfp pods cidr all dir in out to from
  while IFS=$'\x1f' read -r name id addr boot pspi penc pack pfp pods; do
    if [ "$pspi" = "$k" ] && [ -n "$pfp" ] && [ "$pfp" != "$fp" ]; then
      echo "peer.sh: $name holds other key material under key ID $k" >&2; exit 1
    fi
    in=$(spi "$k" "$id") out=$(spi "$k" "$ME")   # each direction: the sender's node ID in the SPI
    if [[ $SAS != *" $UNDERLAY/$in "* || $SAS != *" $addr/$out "* ]]; then
      { read -r to; read -r from; } < <(derive "$STATE/keys/$k" "$UNDERLAY" "$addr" "$BOOT" "$boot")
      [[ $SAS == *" $UNDERLAY/$in "* ]] || ip xfrm state add src "$addr" dst "$UNDERLAY" proto esp spi "$in" \
        reqid "$REQID" mode tunnel replay-window 1024 flag esn af-unspec $from
      [[ $SAS == *" $addr/$out "* ]] || ip xfrm state add src "$UNDERLAY" dst "$addr" proto esp spi "$out" \
        reqid "$REQID" mode tunnel replay-window 1024 flag esn af-unspec $to
      SAS+="$UNDERLAY/$in $addr/$out "
    fi
    for cidr in $pods; do
      all=$(any "$cidr")
      [[ $POLICIES == *" out|$all|$cidr|"* ]] ||   # never plaintext: blocked until step 4 points it at an SA
        ip xfrm policy add src "$all" dst "$cidr" dir out priority "$PRIORITY" action block
      [ "$all" = "$(any "$POD_CIDR")" ] || continue
      for dir in in fwd; do   # what comes from the peer's pods to ours must have come through its SAs
        [[ $POLICIES == *" $dir|$cidr|$POD_CIDR|"* ]] ||
          ip xfrm policy add src "$cidr" dst "$POD_CIDR" dir $dir priority "$PRIORITY" \
            tmpl src "$addr" dst "$UNDERLAY" proto esp reqid "$REQID" mode tunnel
      done
    done
  done < <(each_peer)
}

advertise() {  # step 3 (R2): spi = the key whose IN SAs exist for every peer; remember the revision it got
  local k fp; read -r k fp < <(derive "$1"); mine
  [ "$KEY" = "$k" ] && return
  publish ".spi = $k | .keyFingerprint = \"$fp\""; mine; echo "$REV" >"$STATE/advertised"
}

egress() {  # step 4 (R3): OUT policies → the SA of older(our spi, the peer's spi); publish encryptSpi, xfrmRevision
  local name id addr boot pspi penc pack pfp pods use cidr all seen ack
  while IFS=$'\x1f' read -r name id addr boot pspi penc pack pfp pods; do
    # Not before the peer advertises a key and has seen our record (its xfrmRevision reached our registration):
    # until then it has no IN SA for us, and the block policy stays.
    [ "$pspi" != 0 ] && [ "$pack" -ge "$(<"$STATE/registered")" ] || continue
    use=$(spi "$(older "$KEY" "$pspi")" "$ME")
    [[ $SAS == *" $addr/$use "* ]] || { echo "peer.sh: no OUT SA $use to $name (install its key)" >&2; exit 1; }
    for cidr in $pods; do
      all=$(any "$cidr")
      [[ $POLICIES == *" out|$all|$cidr|$use "* ]] ||
        ip xfrm policy update src "$all" dst "$cidr" dir out priority "$PRIORITY" \
          tmpl src "$UNDERLAY" dst "$addr" proto esp spi "$use" reqid "$REQID" mode tunnel
    done
  done < <(each_peer)
  # xfrmRevision: per peer, the revision of its record's last change in anything but its own xfrmRevision (the
  # agent's rule: acknowledging acknowledgements makes two nodes republish each other forever); the newest wins.
  { read -r seen; read -r ack; } < <(jq -c --arg me "$NAME" --argjson old "$ACK" --slurpfile seen "$STATE/seen.json" '
    reduce (.records[] | select(.name != $me)) as $r ($seen[0];
      ($r | del(.xfrmRevision, .revision, .heartbeatMillis, .sequence) | tojson) as $c
      | if .[$r.name].c == $c then . else .[$r.name] = {c: $c, r: $r.revision} end)
    | ., ([.[].r, $old] | max)' "$STATE/list.json")
  printf '%s\n' "$seen" >"$STATE/seen.json"
  [ "$ENC:$ACK" = "$KEY:$ack" ] || { publish ".encryptSpi = $KEY | .xfrmRevision = $ack"; ENC=$KEY ACK=$ack; }
}

reclaim() {  # step R4: an old key's SAs per peer and direction, once that peer's record says it is unused
  local name id addr boot pspi penc pack pfp pods o in out
  [ "$ENC" = "$KEY" ] || return 0
  while IFS=$'\x1f' read -r name id addr boot pspi penc pack pfp pods; do
    for o in "$STATE"/keys/*; do
      o=${o##*/}; newer "$o" "$KEY" || continue   # only keys older than ours
      in=$(spi "$o" "$id") out=$(spi "$o" "$ME")
      # IN: the peer sends with older(its encryptSpi, our spi as it saw it). Unused once its encryptSpi is newer
      # than o and its xfrmRevision reached the revision at which our new spi was stored.
      if [[ $SAS == *" $UNDERLAY/$in "* ]] && [ "$penc" != 0 ] && newer "$o" "$penc" \
        && [ "$pack" -ge "$(<"$STATE/advertised")" ]; then
        ip xfrm state delete src "$addr" dst "$UNDERLAY" proto esp spi "$in"; SAS=${SAS/ $UNDERLAY\/$in / }
      fi
      # OUT: we send with older(our spi, its spi), so step 4 moved off o once its spi is newer than o.
      if [[ $SAS == *" $addr/$out "* ]] && [ "$pspi" != 0 ] && newer "$o" "$pspi"; then
        ip xfrm state delete src "$UNDERLAY" dst "$addr" proto esp spi "$out"; SAS=${SAS/ $addr\/$out / }
      fi
    done
  done < <(each_peer)
  for o in "$STATE"/keys/*; do   # a key is forgotten with its last SA
    o=${o##*/}; [ "$o" = "$KEY" ] || [[ $SAS == *"/$(printf '0x%04x' "$o")"* ]] || rm "$STATE/keys/$o"
  done
}

sync() {  # steps 2, 4 and R4 on one fresh list; repeat on every registry change (or every few seconds)
  fetch; mine; kernel
  [ "$KEY" != 0 ] || { echo "peer.sh: advertise a key first" >&2; exit 1; }
  sas "$KEY" "$FP"; egress; reclaim
}
heartbeat() {  # at least every lease TTL / 3 (10 s for the default 30 s); 404 (lease expired) or 409: publish again
  local s; s=$(jq -r --argjson ms "$(date +%s%3N)" '[$ms, .sequence + 1] | max' "$STATE/record.json")
  api POST "/v1/nodes/$NAME/heartbeat?sequence=$s" >/dev/null 2>&1 || publish .
}
case ${1:-} in
  register | install | advertise | sync | heartbeat) "$@" ;;
  *) echo "usage: PEER_CONF=FILE $0 register | install KEYFILE | advertise KEYFILE | sync | heartbeat" >&2; exit 2 ;;
esac
