// Agent daemon (issue 6).
