// etcd v3 registry backend (issue 5).
import Registry
