#!/usr/bin/env python3
"""What no schema knows about deploy/: paths, ports, names and capabilities that must agree across the systemd
units, the example config, the Kubernetes manifests, the Containerfile and docs/deploy.md. Run by
scripts/check-deploy. Prints one line per problem, naming the file; exits 1 if there is any.

usage: check-deploy-fields.py REPO_ROOT [IPSEC_AGENT_BINARY]
With a binary, the rendered DaemonSet config and the example config are also parsed by the agent itself
(`ipsec-agent status --config`), and the Containerfile's runtime packages are checked against `ldd`.
"""
import configparser
import os
import re
import subprocess
import sys
import tempfile
import time

import yaml

root = sys.argv[1]
binary = sys.argv[2] if len(sys.argv) > 2 else None
problems = []


def unexpected(kind, value, traceback):
    """A manifest or unit shaped otherwise than this checker expects: one line, not a traceback."""
    line = traceback.tb_lineno if traceback else "?"
    while traceback and traceback.tb_next:
        traceback = traceback.tb_next
        line = traceback.tb_lineno
    print(f"deploy/: cannot check (scripts/check-deploy-fields.py:{line}: {kind.__name__}: {value})")
    for run, copy, _, _ in parse_runs:
        run.kill()
        run.communicate()
        os.unlink(copy)
    sys.exit(1)


sys.excepthook = unexpected


def finish(ok_message=None):
    finish_config_parses()
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print(ok_message)
    sys.exit(0)


def problem(path, text):
    problems.append(f"{os.path.relpath(path, root)}: {text}")


def path_of(*parts):
    return os.path.join(root, *parts)


def load_unit(name):
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    with open(path_of("deploy", "systemd", name)) as f:
        # Repeated keys (SystemCallFilter=) are legal in units; keep the last, as configparser cannot keep all.
        parser.read_string(f.read())
    return parser


def load_manifests(name):
    with open(path_of("deploy", "kubernetes", name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def find(docs, kind, name):
    for d in docs:
        if d.get("kind") == kind and d.get("metadata", {}).get("name") == name:
            return d
    return None


def port_number(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def mount(container, volume):
    for m in container.get("volumeMounts", []):
        if m["name"] == volume:
            return m
    return None


parse_runs = []


def parse_config_with_agent(config_path, label, shown=None):
    """`ipsec-agent status --config` parses the whole file, then connects to adminListen. It runs on a copy with
    adminListen on a closed loopback port (no traffic leaves the machine): it fails at once if the file does not
    parse, else it keeps retrying the port for ~10 s. Started here, judged by finish_config_parses()."""
    if not binary:
        return
    with open(config_path) as f:
        text = f.read()
    text = re.sub(r"^adminListen:.*$", "adminListen: 127.0.0.1:1", text, flags=re.M)
    if "adminListen:" not in text:
        text += "\nadminListen: 127.0.0.1:1\n"
    copy = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    copy.write(text)
    copy.close()
    try:
        run = subprocess.Popen([binary, "status", "--config", copy.name], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    except OSError as error:
        problem(label, f"could not run {binary}: {error}")
        os.unlink(copy.name)
        return
    parse_runs.append((run, copy.name, label, shown or os.path.relpath(label, root)))


def finish_config_parses(seconds=2.0):
    deadline = time.monotonic() + seconds
    for run, copy, label, shown in parse_runs:
        try:
            output, _ = run.communicate(timeout=max(0.1, deadline - time.monotonic()))
            if "cannot reach the agent's admin endpoint" not in output:
                output = output.replace(copy, shown).strip()
                problem(label, "the agent refuses this configuration: " + (output.splitlines() or ["?"])[0])
        except subprocess.TimeoutExpired:
            run.kill()  # parsed, still retrying the closed port
            run.communicate()
        os.unlink(copy)


# --- systemd: the agent unit, the registry unit, the example config.
agent_unit = load_unit("ipsec-agent.service")
unit_path = path_of("deploy", "systemd", "ipsec-agent.service")
service = agent_unit["Service"]
unit_caps = sorted(service.get("CapabilityBoundingSet", "").split())
if unit_caps != ["CAP_BPF", "CAP_NET_ADMIN"]:
    problem(unit_path, f"CapabilityBoundingSet is {unit_caps}, measured set is CAP_NET_ADMIN CAP_BPF (docs/deploy.md)")
if service.get("KillSignal") != "SIGTERM":
    problem(unit_path, "KillSignal must be SIGTERM (the agent's graceful stop)")
timeout = re.fullmatch(r"(\d+)s?", service.get("TimeoutStopSec", ""))
if not timeout or int(timeout.group(1)) <= 10:
    problem(unit_path, "TimeoutStopSec must exceed the agent's own 10 s forced exit")
exec_start = service.get("ExecStart", "").split()
binary_path = exec_start[0] if exec_start else ""
if exec_start[1:2] != ["run"] or "--config" not in exec_start:
    problem(unit_path, "ExecStart must be `ipsec-agent run --config FILE`")
unit_config = exec_start[exec_start.index("--config") + 1] if "--config" in exec_start else ""
read_write = service.get("ReadWritePaths", "").split()

example_path = path_of("deploy", "systemd", "config.example.yaml")
with open(example_path) as f:
    example = yaml.safe_load(f)
if os.path.dirname(unit_config) != "/etc/ipsec-agent":
    problem(unit_path, f"--config {unit_config} is not under /etc/ipsec-agent (docs/deploy.md installs it there)")
pin = example.get("bpfPinDirectory", "/sys/fs/bpf/ipsec-agent")
if not any(pin == p or pin.startswith(p.rstrip("/") + "/") for p in read_write):
    problem(example_path, f"bpfPinDirectory {pin} is not under the unit's ReadWritePaths {read_write}")
if "networkNamespace" in example:
    problem(example_path, "networkNamespace needs CAP_SYS_ADMIN (setns), which the unit does not grant")
if not str(example.get("adminListen", "127.0.0.1:9479")).startswith("127.0.0.1:"):
    problem(example_path, "adminListen should stay on loopback on a systemd host")
parse_config_with_agent(example_path, example_path)

registry_unit = load_unit("ipsec-agent-registry.service")
registry_unit_path = path_of("deploy", "systemd", "ipsec-agent-registry.service")
registry_service = registry_unit["Service"]
if registry_service.get("CapabilityBoundingSet", None) != "":
    problem(registry_unit_path, "the registry needs no capability: CapabilityBoundingSet= must be empty")
if not registry_service.get("LimitNOFILE"):
    problem(registry_unit_path, "LimitNOFILE is missing (one open watch per node)")
registry_exec = registry_service.get("ExecStart", "").split()
if registry_exec[:3] != [binary_path, "registry", "serve"]:
    problem(registry_unit_path, f"ExecStart must be `{binary_path} registry serve ...` like the agent unit's binary")
if "%d/" not in registry_service.get("ExecStart", "") or "LoadCredential" not in registry_service:
    problem(registry_unit_path, "--secret-file must come from LoadCredential= (%d/...): the transient user cannot read /etc")

# --- Kubernetes.
k8s = {name: load_manifests(name) for name in
       ("namespace.yaml", "agent-config.yaml", "agent-daemonset.yaml", "registry.yaml")}
ds_path = path_of("deploy", "kubernetes", "agent-daemonset.yaml")
cm_path = path_of("deploy", "kubernetes", "agent-config.yaml")
reg_path = path_of("deploy", "kubernetes", "registry.yaml")
ds = find(k8s["agent-daemonset.yaml"], "DaemonSet", "ipsec-agent")
cm = find(k8s["agent-config.yaml"], "ConfigMap", "ipsec-agent-config")
registry_service_k8s = find(k8s["registry.yaml"], "Service", "ipsec-agent-registry")
registry_set = find(k8s["registry.yaml"], "StatefulSet", "ipsec-agent-registry")
namespace = find(k8s["namespace.yaml"], "Namespace", "ipsec-agent")
for label, doc, path in (("DaemonSet ipsec-agent", ds, ds_path), ("ConfigMap ipsec-agent-config", cm, cm_path),
                         ("Service ipsec-agent-registry", registry_service_k8s, reg_path),
                         ("StatefulSet ipsec-agent-registry", registry_set, reg_path),
                         ("Namespace ipsec-agent", namespace, path_of("deploy", "kubernetes", "namespace.yaml"))):
    if doc is None:
        problem(path, f"{label} not found")
if None in (ds, cm, registry_service_k8s, registry_set, namespace):
    finish()

for docs in k8s.values():
    for d in docs:
        if d["kind"] != "Namespace" and d["metadata"].get("namespace") != "ipsec-agent":
            problem(ds_path, f"{d['kind']} {d['metadata']['name']} is not in namespace ipsec-agent")

pod = ds["spec"]["template"]["spec"]
agent = next((c for c in pod["containers"] if c["name"] == "agent"), None)
render = next((c for c in pod.get("initContainers", []) if c["name"] == "render-config"), None)
if agent is None or render is None:
    problem(ds_path, "containers must include `agent` and initContainers `render-config`")
    finish()
volumes = {v["name"]: v for v in pod.get("volumes", [])}

if pod.get("hostNetwork") is not True:
    problem(ds_path, "hostNetwork must be true (the agent programs the node's XFRM and tc)")
if pod.get("dnsPolicy") != "ClusterFirstWithHostNet":
    problem(ds_path, "dnsPolicy must be ClusterFirstWithHostNet to resolve the registry Service from hostNetwork")
if int(pod.get("terminationGracePeriodSeconds", 30)) <= 10:
    problem(ds_path, "terminationGracePeriodSeconds must exceed the agent's 10 s forced exit")
if agent["command"][0] != binary_path:
    problem(ds_path, f"agent command {agent['command'][0]} differs from the unit's {binary_path}")

security = agent.get("securityContext", {})
caps = security.get("capabilities", {})
k8s_caps = sorted("CAP_" + c for c in caps.get("add", []))
if k8s_caps != unit_caps:
    problem(ds_path, f"capabilities.add {caps.get('add')} differ from the unit's CapabilityBoundingSet {unit_caps}")
if caps.get("drop") != ["ALL"]:
    problem(ds_path, "capabilities.drop must be [ALL]")
if security.get("privileged"):
    problem(ds_path, "the agent must not be privileged")
if security.get("runAsUser") != 0:
    problem(ds_path, "the agent must run as uid 0 (it refuses any other euid before loading BPF)")
if security.get("allowPrivilegeEscalation") is not False:
    problem(ds_path, "allowPrivilegeEscalation must be false (NoNewPrivileges=yes in the unit)")

# Render the config template exactly as the init container does, with a node of pod-cidrs.
template = cm["data"].get("config.yaml.template", "")
cidr_lines = [l.split() for l in cm["data"].get("pod-cidrs", "").splitlines() if l.strip()]
if not cidr_lines or any(len(l) != 2 for l in cidr_lines):
    problem(cm_path, "pod-cidrs must have lines `NODE CIDR[,CIDR]`")
script = render["command"][-1]
template_mount = mount(render, "config-template")
render_out = mount(render, "config")
config_arg = agent["command"][agent["command"].index("--config") + 1] if "--config" in agent["command"] else ""
agent_config_mount = mount(agent, "config")
if not template_mount or not render_out or not agent_config_mount:
    problem(ds_path, "render-config must mount config-template and config; the agent must mount config")
elif os.path.dirname(config_arg) != agent_config_mount["mountPath"]:
    problem(ds_path, f"the agent's --config {config_arg} is not in the config volume ({agent_config_mount['mountPath']})")
rendered = None
if cidr_lines and template_mount and render_out:
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(f"{tmp}/template")
        os.makedirs(f"{tmp}/out")
        for key, text in cm["data"].items():
            with open(f"{tmp}/template/{key}", "w") as f:
                f.write(text)
        local = script.replace(template_mount["mountPath"], f"{tmp}/template").replace(render_out["mountPath"], f"{tmp}/out")
        node, node_cidrs = cidr_lines[0]
        run = subprocess.run(["sh", "-c", local], env={"PATH": "/usr/bin:/bin", "NODE_NAME": node, "NODE_IP": "192.0.2.10"},
                             capture_output=True, text=True)
        out_file = f"{tmp}/out/{os.path.basename(config_arg)}"
        if run.returncode != 0 or not os.path.exists(out_file):
            problem(ds_path, f"render-config failed for node {node}: {run.stderr.strip()}")
        else:
            with open(out_file) as f:
                rendered = yaml.safe_load(f)
            if rendered.get("node") != node or rendered.get("podCIDRs") != node_cidrs.split(","):
                problem(cm_path, f"rendered node/podCIDRs {rendered.get('node')}/{rendered.get('podCIDRs')}, expected {node}/{node_cidrs}")
            parse_config_with_agent(out_file, cm_path, f"(config.yaml rendered for {node})")
        missing = subprocess.run(["sh", "-c", local], env={"PATH": "/usr/bin:/bin", "NODE_NAME": "no-such-node", "NODE_IP": "192.0.2.10"},
                                 capture_output=True, text=True)
        if missing.returncode == 0:
            problem(ds_path, "render-config succeeds for a node missing from pod-cidrs")

if rendered:
    # keyFile: the projected key Secret's mount path + item path; no subPath (it would never see an update).
    key_mount = mount(agent, "keys")
    key_volume = volumes.get("keys", {})
    sources = key_volume.get("projected", {}).get("sources", [])
    items = [i for s in sources for i in s.get("secret", {}).get("items", [])]
    if not key_mount or "projected" not in key_volume or len(items) != 1:
        problem(ds_path, "volume keys must be a projected Secret with one item, mounted by the agent")
    else:
        if "subPath" in key_mount:
            problem(ds_path, "the keys mount must not use subPath (a subPath mount never sees the ..data swap)")
        expected = f"{key_mount['mountPath']}/{items[0]['path']}"
        if rendered.get("keyFile") != expected:
            problem(cm_path, f"keyFile {rendered.get('keyFile')} is not the projected key file {expected}")
    # credentialFile: a file of the credentials Secret volume, named after the node.
    credential_mount = mount(agent, "credentials")
    registry = rendered.get("registry", {})
    credential = registry.get("credentialFile", "")
    if not credential_mount or "secret" not in volumes.get("credentials", {}):
        problem(ds_path, "volume credentials must be a Secret mounted by the agent")
    elif os.path.dirname(credential) != credential_mount["mountPath"] or os.path.basename(credential) != rendered.get("node"):
        problem(cm_path, f"credentialFile {credential} is not {credential_mount['mountPath']}/<node name>")
    # registry.tls.ca: a file of the registry-tls Secret volume.
    tls_mount = mount(agent, "registry-tls")
    ca = registry.get("tls", {}).get("ca", "")
    tls_items = volumes.get("registry-tls", {}).get("secret", {}).get("items", [])
    if not tls_mount or ca not in {f"{tls_mount['mountPath']}/{item['path']}" for item in tls_items}:
        problem(cm_path, f"registry.tls.ca {ca or '(unset)'} is not a file of the mounted registry-tls Secret")
    for name in ("keys", "credentials"):
        source = volumes.get(name, {})
        mode = source.get("projected", source.get("secret", {})).get("defaultMode")
        if mode is None or mode & 0o077:
            problem(ds_path, f"volume {name}: defaultMode must grant nothing to group or others (the agent checks)")
    # bpfPinDirectory: under the hostPath /sys/fs/bpf mount.
    bpf_mount = mount(agent, "bpffs")
    if volumes.get("bpffs", {}).get("hostPath", {}).get("path") != "/sys/fs/bpf" or not bpf_mount:
        problem(ds_path, "volume bpffs must be hostPath /sys/fs/bpf, mounted by the agent")
    elif not str(rendered.get("bpfPinDirectory", "")).startswith(bpf_mount["mountPath"] + "/"):
        problem(cm_path, f"bpfPinDirectory {rendered.get('bpfPinDirectory')} is not under {bpf_mount['mountPath']}")
    # adminListen port = probe ports = scrape annotation; probe paths.
    admin_port = int(str(rendered.get("adminListen", "127.0.0.1:9479")).rsplit(":", 1)[1])
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = agent.get(probe, {}).get("httpGet", {})
        if get.get("path") != path:
            problem(ds_path, f"{probe} must GET {path}")
        if port_number(agent, get.get("port")) != admin_port:
            problem(ds_path, f"{probe} port {get.get('port')} is not adminListen's port {admin_port}")
    annotations = ds["spec"]["template"]["metadata"].get("annotations", {})
    if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/port") != str(admin_port) \
            or annotations.get("prometheus.io/path") != "/metrics":
        problem(ds_path, f"Prometheus annotations must scrape /metrics on port {admin_port}")
    if str(rendered.get("adminListen", "")).startswith("127."):
        problem(cm_path, "adminListen on loopback: the kubelet's probes and Prometheus reach the pod at the node IP")
    if "networkNamespace" in rendered:
        problem(cm_path, "networkNamespace needs CAP_SYS_ADMIN; with hostNetwork the agent is in the node's namespace")
    # The registry URL names the Service and its port.
    url = re.fullmatch(r"https://([^.:/]+)\.([^.:/]+)\.svc(?:\.cluster\.local)?:(\d+)", str(registry.get("embedded", "")))
    service_port = registry_service_k8s["spec"]["ports"][0]["port"]
    if not url or (url.group(1), url.group(2), int(url.group(3))) != ("ipsec-agent-registry", "ipsec-agent", service_port):
        problem(cm_path, f"registry.embedded {registry.get('embedded')} is not the Service ipsec-agent-registry.ipsec-agent:{service_port}")

# Registry StatefulSet: listen port = Service targetPort; secret file = mounted secret item; data = mounted volume.
registry_pod = registry_set["spec"]["template"]["spec"]
registry_container = registry_pod["containers"][0]
command = registry_container["command"]
arg = lambda flag: command[command.index(flag) + 1] if flag in command else ""
if command[:3] != [binary_path, "registry", "serve"]:
    problem(reg_path, f"command must be `{binary_path} registry serve ...`")
listen_port = int(arg("--listen").rsplit(":", 1)[1]) if ":" in arg("--listen") else None
target = registry_service_k8s["spec"]["ports"][0]["targetPort"]
if port_number(registry_container, target) != listen_port:
    problem(reg_path, f"Service targetPort {target} is not the --listen port {listen_port}")
registry_volumes = {v["name"]: v for v in registry_pod.get("volumes", [])}
secret_mount = mount(registry_container, "secret")
secret_items = registry_volumes.get("secret", {}).get("secret", {}).get("items", [])
mounted = {f"{secret_mount['mountPath']}/{item['path']}" for item in secret_items} if secret_mount else set()
for flag in ("--secret-file", "--tls-cert", "--tls-key"):
    if arg(flag) not in mounted:
        problem(reg_path, f"{flag} {arg(flag)} is not a mounted secret item")
data_mount = mount(registry_container, "data")
if not data_mount or arg("--data") != data_mount["mountPath"]:
    problem(reg_path, f"--data {arg('--data')} is not the data volume's mount path")
registry_caps = registry_container.get("securityContext", {}).get("capabilities", {})
if registry_caps.get("drop") != ["ALL"] or registry_caps.get("add"):
    problem(reg_path, "the registry needs no capability: drop [ALL], add none")

# Every Secret the manifests use is created in docs/deploy.md, by name.
docs_path = path_of("docs", "deploy.md")
docs = open(docs_path).read() if os.path.exists(docs_path) else ""
if not docs:
    problem(docs_path, "missing")
secrets = {volumes["credentials"]["secret"]["secretName"], registry_volumes["secret"]["secret"]["secretName"]}
secrets |= {s["secret"]["name"] for s in volumes["keys"]["projected"]["sources"]}
for secret in sorted(secrets):
    if not re.search(rf"kubectl .*create secret generic {re.escape(secret)}\b", docs):
        problem(docs_path, f"no `kubectl ... create secret generic {secret}` for the Secret the manifests mount")
# The capability table of docs/deploy.md lists exactly the unit's capabilities.
documented = sorted(set(re.findall(r"^\| `(CAP_[A-Z_]+)` \| (?:yes|needed)", docs, re.M)))
if documented != unit_caps:
    problem(docs_path, f"the capability table marks {documented} as needed, the unit grants {unit_caps}")

# Containerfile: the binary lands where the units and manifests run it; the runtime has the shared libraries.
containerfile_path = path_of("deploy", "Containerfile")
with open(containerfile_path) as f:
    containerfile = f.read()
if f"/out/ipsec-agent {binary_path}" not in containerfile:
    problem(containerfile_path, f"the runtime stage must install the binary at {binary_path}")
runtime = containerfile.split("FROM debian:bookworm-slim", 1)[-1]
if binary:
    base = {"libc6", "libgcc-s1"}  # in every Debian image
    packages = set()
    try:
        ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
        for library in re.findall(r"=> (/\S+)", ldd):
            if "/swift/" in library:
                continue  # linked in by --static-swift-stdlib in the image
            owner = subprocess.run(["dpkg", "-S", os.path.realpath(library)], capture_output=True, text=True)
            if owner.returncode != 0:
                owner = subprocess.run(["dpkg", "-S", library], capture_output=True, text=True)
            if owner.returncode == 0:
                packages.add(owner.stdout.split(":")[0])
    except (OSError, subprocess.CalledProcessError) as error:
        problem(containerfile_path, f"ldd {binary} failed: {error}")
    for package in sorted(packages - base):
        if not re.search(rf"\b{re.escape(package)}\b", runtime):
            problem(containerfile_path, f"the runtime stage does not install {package} (ldd: the binary links it)")

finish(f"check-deploy-fields: ok ({'with' if binary else 'without'} the agent binary)")
