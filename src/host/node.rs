//! Facts about this node that pod configs depend on: paths, DNS, addresses, capacity.
//! Detected once at start-up (IO); after that, plain data that `convert` reads.

use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};

use super::addresses::{self, AddressError, Lookup};
use crate::pod::environment::Capacity;
use crate::pod::{CgroupDriver, NodeName};

/// The host's resolver configuration, as `/etc/resolv.conf` holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines.
    pub servers: Vec<String>,
    /// `search` domains.
    pub searches: Vec<String>,
    /// `options`.
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses resolv.conf text; unknown lines are ignored, as the resolver does.
    pub fn parse(text: &str) -> ResolvConf {
        let mut rc = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => rc.servers.extend(words.next().map(str::to_owned)),
                Some("search") | Some("domain") => {
                    rc.searches = words.map(str::to_owned).collect();
                }
                Some("options") => rc.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        rc
    }

    /// Reads a resolv.conf file; a missing file is an empty configuration.
    pub fn read(path: &Path) -> ResolvConf {
        std::fs::read_to_string(path)
            .map(|t| ResolvConf::parse(&t))
            .unwrap_or_default()
    }
}

/// Everything about the node that turning a pod into CRI configs needs.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeContext {
    /// The node name, as in pod names.
    pub node: NodeName,
    /// podvisor's state directory (`pods/<uid>/...` below it).
    pub root_dir: PathBuf,
    /// Where pod log directories go (`/var/log/pods`).
    pub pod_log_dir: PathBuf,
    /// The cgroup under which pod cgroups are created (`/kubepods`).
    pub cgroup_root: String,
    /// How the runtime manages cgroups: pod cgroups are named for it.
    pub cgroup_driver: CgroupDriver,
    /// Where each container's log gets a symlink named for the log shippers
    /// (`/var/log/containers`); `None`: no links.
    pub container_log_links: Option<PathBuf>,
    /// The host's DNS configuration.
    pub resolv_conf: ResolvConf,
    /// The node's primary address (the pod's `status.hostIP`): the first of `node_ips`.
    pub host_ip: Option<IpAddr>,
    /// The node's `InternalIP` addresses, primary first (see `addresses`).
    pub node_ips: Vec<IpAddr>,
    /// Total memory in bytes.
    pub memory_bytes: i64,
    /// Online CPUs.
    pub cpus: i64,
    /// Whether the kernel enforces AppArmor (`/sys/module/apparmor/parameters/enabled`).
    pub apparmor: bool,
    /// The huge page sizes the kernel offers, in bytes (`/sys/kernel/mm/hugepages`); none
    /// where no hugetlb cgroup controller is mounted, which could not hold their limits.
    pub hugepage_sizes: Vec<u64>,
}

impl NodeContext {
    /// Detects the host facts, picking the node's addresses as the kubelet does without
    /// `--node-ip`.
    pub fn detect(node: NodeName, root_dir: PathBuf, pod_log_dir: PathBuf) -> NodeContext {
        let node_ips = host_addresses(&[], node.as_str()).unwrap_or_default();
        NodeContext {
            node,
            root_dir,
            pod_log_dir,
            cgroup_root: "/kubepods".to_owned(),
            cgroup_driver: CgroupDriver::default(),
            container_log_links: None,
            resolv_conf: ResolvConf::read(Path::new("/etc/resolv.conf")),
            host_ip: node_ips.first().copied(),
            node_ips,
            memory_bytes: mem_total().unwrap_or(0),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as i64)
                .unwrap_or(1),
            apparmor: apparmor_enabled(),
            hugepage_sizes: if hugetlb_mounted(
                &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
                |dir| std::fs::read_to_string(dir.join("cgroup.controllers")).ok(),
            ) {
                hugepage_sizes(Path::new("/sys/kernel/mm/hugepages"))
            } else {
                Vec::new()
            },
        }
    }

    /// The same node with the addresses `--node-ip` names (each checked to be one of the
    /// host's); an empty list or an unspecified address (`::`: prefer IPv6) picks them as
    /// the kubelet does.
    pub fn with_node_ips(mut self, node_ips: &[IpAddr]) -> Result<NodeContext, AddressError> {
        if !node_ips.is_empty() {
            self.node_ips = host_addresses(node_ips, self.node.as_str())?;
            self.host_ip = self.node_ips.first().copied();
        }
        Ok(self)
    }

    /// The log directory of a pod: `<pod-log-dir>/<namespace>_<name>_<uid>`.
    pub fn pod_log_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        crate::pod::log_dir(&self.pod_log_dir, namespace, name, uid)
    }

    /// What the node offers, for limits a container leaves unset.
    pub fn capacity(&self) -> Capacity {
        Capacity {
            cpus: self.cpus,
            memory_bytes: self.memory_bytes,
        }
    }

    /// A pod's own directory under the root dir: `<root-dir>/pods/<uid>`.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root_dir.join("pods").join(uid)
    }
}

fn host_addresses(node_ips: &[IpAddr], node: &str) -> Result<Vec<IpAddr>, AddressError> {
    let local = addresses::local_addresses();
    addresses::choose(
        node_ips,
        node,
        &Lookup {
            local: &local,
            resolve: &addresses::resolve,
            default_route: &|v6| default_route_ip(v6).or_else(|| default_route_ip(!v6)),
        },
    )
}

/// The source address the kernel picks for reaching the outside in one family: no packet
/// is sent.
fn default_route_ip(v6: bool) -> Option<IpAddr> {
    let (bind, target) = if v6 {
        ("[::]:0", "[2001:db8::1]:9")
    } else {
        ("0.0.0.0:0", "192.0.2.1:9")
    };
    let sock = UdpSocket::bind(bind).ok()?;
    sock.connect(target).ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// runc's test: the module parameter reads `Y`.
fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|t| t.starts_with('Y'))
}

/// The sizes named by `hugepages-<n>kB` directories in `dir`, in bytes, smallest first.
fn hugepage_sizes(dir: &Path) -> Vec<u64> {
    let mut sizes: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let kib = name
                .to_str()?
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?;
            kib.parse::<u64>().ok().map(|k| k * 1024)
        })
        .collect();
    sizes.sort_unstable();
    sizes
}

/// Whether containers can get a hugetlb cgroup: with cgroup v1 hierarchies mounted (v1 or
/// hybrid), one of them must carry the `hugetlb` option; on a pure cgroup v2 host the root's
/// `cgroup.controllers` (read by `controllers`) must list it.
///
/// The kernel may offer huge pages with the controller compiled in (`/proc/cgroups`) but
/// bound to no v1 hierarchy; in hybrid mode it then shows up in the unified hierarchy, which
/// runc's v1 manager never uses. runc fails every container that carries hugetlb limits there,
/// even zero ones ("cannot set hugetlb limit: container could not join or create cgroup");
/// containerd drops them by default (`disable_hugetlb_controller`), CRI-O only where
/// `/proc/cgroups` lacks the controller (issue 14).
fn hugetlb_mounted(mountinfo: &str, controllers: impl Fn(&Path) -> Option<String>) -> bool {
    let mut v1 = false;
    let mut v2_dirs = Vec::new();
    for line in mountinfo.lines() {
        let Some((mount, fs)) = line.split_once(" - ") else {
            continue;
        };
        let mut fs = fs.split_whitespace();
        let (fstype, options) = (fs.next(), fs.nth(1).unwrap_or(""));
        match fstype {
            Some("cgroup") if options.split(',').any(|o| o == "hugetlb") => return true,
            Some("cgroup") => v1 = true,
            Some("cgroup2") => v2_dirs.extend(mount.split_whitespace().nth(4)),
            _ => {}
        }
    }
    !v1 && v2_dirs.into_iter().any(|dir| {
        controllers(Path::new(dir)).is_some_and(|c| c.split_whitespace().any(|c| c == "hugetlb"))
    })
}

fn mem_total() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_is_parsed_like_the_resolver() {
        let rc = ResolvConf::parse(
            "# comment\nnameserver 10.0.0.1\nnameserver 10.0.0.2 # trailing\nsearch a.example b.example\noptions ndots:2 edns0\nbogus line\n",
        );
        assert_eq!(rc.servers, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(rc.searches, ["a.example", "b.example"]);
        assert_eq!(rc.options, ["ndots:2", "edns0"]);
    }

    #[test]
    fn huge_page_sizes_are_read_from_the_kernels_directory_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["hugepages-1048576kB", "hugepages-2048kB", "not-a-size"] {
            std::fs::create_dir(dir.path().join(name)).expect("mkdir");
        }
        assert_eq!(hugepage_sizes(dir.path()), [2 << 20, 1 << 30]);
        assert_eq!(
            hugepage_sizes(&dir.path().join("missing")),
            Vec::<u64>::new()
        );
    }

    /// Issue 14: this VM kind (hybrid) has the controller in /proc/cgroups, bound to no v1
    /// hierarchy, so its unified hierarchy lists it.
    #[test]
    fn hugetlb_counts_only_where_runc_can_use_the_controller() {
        let hybrid_without = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let lists = |dir: &Path| {
            (dir == Path::new("/sys/fs/cgroup") || dir == Path::new("/sys/fs/cgroup/unified"))
                .then(|| "cpuset cpu io memory hugetlb pids\n".to_owned())
        };
        assert!(!hugetlb_mounted(hybrid_without, lists));
        let v1 = format!(
            "{hybrid_without}42 31 0:39 / /sys/fs/cgroup/hugetlb rw,relatime - cgroup cgroup rw,hugetlb\n"
        );
        assert!(hugetlb_mounted(&v1, |_: &Path| None));
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert!(hugetlb_mounted(v2, lists));
        assert!(!hugetlb_mounted(v2, |_: &Path| Some("cpu memory\n".into())));
        assert!(!hugetlb_mounted("", lists));
    }
}
