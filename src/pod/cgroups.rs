//! Pure: the cgroup a pod's containers nest under, named as the kubelet names it for each
//! cgroup driver. The kubelet's internal name is a list of components (`kubepods`,
//! `burstable`, `pod<uid>`); the cgroupfs driver joins them as a path
//! (`/kubepods/burstable/pod<uid>`), the systemd driver as nested slices
//! (`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice`),
//! with `-` inside a component written `_` (the kubelet's `ToSystemd`, systemd's
//! `ExpandSlice`). Runtimes take the parent as the kubelet sends it: containerd and CRI-O use
//! the last slice with the systemd driver.

use std::fmt;
use std::str::FromStr;

use super::qos::QosClass;

/// How cgroups are managed on the node: by writing cgroupfs directly, or through systemd.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CgroupDriver {
    /// `cgroupfs` (the kubelet's default).
    #[default]
    Cgroupfs,
    /// `systemd` (what kubeadm configures).
    Systemd,
}

impl CgroupDriver {
    /// The kubelet's name for it.
    pub fn name(self) -> &'static str {
        match self {
            CgroupDriver::Cgroupfs => "cgroupfs",
            CgroupDriver::Systemd => "systemd",
        }
    }
}

impl fmt::Display for CgroupDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CgroupDriver {
    type Err = String;

    fn from_str(s: &str) -> Result<CgroupDriver, String> {
        match s {
            "cgroupfs" => Ok(CgroupDriver::Cgroupfs),
            "systemd" => Ok(CgroupDriver::Systemd),
            other => Err(format!(
                "{other:?} is not a cgroup driver (cgroupfs or systemd)"
            )),
        }
    }
}

/// The driver to use, as the kubelet decides since 1.31: the runtime's own (CRI
/// `RuntimeConfig`) when it says one, else the configured one, else cgroupfs. A configured
/// driver the runtime contradicts is an error: pods would fail to start one by one.
pub fn choose_driver(
    configured: Option<CgroupDriver>,
    runtime: Option<CgroupDriver>,
) -> Result<CgroupDriver, String> {
    match (configured, runtime) {
        (Some(c), Some(r)) if c != r => Err(format!(
            "cgroupDriver is {c} but the container runtime uses {r}: configure both the same \
             (containerd: SystemdCgroup in the runc runtime's options; CRI-O: cgroup_manager), \
             or leave cgroupDriver unset to follow the runtime"
        )),
        (_, Some(r)) => Ok(r),
        (Some(c), None) => Ok(c),
        (None, None) => Ok(CgroupDriver::Cgroupfs),
    }
}

/// The kubelet's internal cgroup name of a pod: the root's components, the QoS class but for
/// Guaranteed, `pod<uid>`.
fn components(root: &str, qos: QosClass, uid: &str) -> Vec<String> {
    root.split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .chain(qos.cgroup_dir().map(str::to_owned))
        .chain(std::iter::once(format!("pod{uid}")))
        .collect()
}

/// systemd's `ExpandSlice`: `a-b-c.slice` → `/a.slice/a-b.slice/a-b-c.slice`.
fn expand_slice(name: &str) -> String {
    let stem = name.strip_suffix(".slice").unwrap_or(name);
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    path
}

/// A cgroup name as the driver writes it.
fn render(driver: CgroupDriver, parts: &[String]) -> String {
    match driver {
        CgroupDriver::Cgroupfs => format!("/{}", parts.join("/")),
        CgroupDriver::Systemd => {
            let escaped: Vec<String> = parts.iter().map(|p| p.replace('-', "_")).collect();
            expand_slice(&format!("{}.slice", escaped.join("-")))
        }
    }
}

/// The cgroup parent of a pod's sandbox and containers, as the kubelet sends it.
pub fn pod_cgroup(driver: CgroupDriver, root: &str, qos: QosClass, uid: &str) -> String {
    render(driver, &components(root, qos, uid))
}

/// The pod's cgroup under every QoS class (what to remove when its QoS is not known).
pub fn pod_cgroups_any_qos(driver: CgroupDriver, root: &str, uid: &str) -> Vec<String> {
    [
        QosClass::Guaranteed,
        QosClass::Burstable,
        QosClass::BestEffort,
    ]
    .into_iter()
    .map(|q| pod_cgroup(driver, root, q, uid))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "1234-abcd-5678-efgh";

    #[test]
    fn cgroupfs_names_are_the_kubelets_paths_for_every_qos_class() {
        let d = CgroupDriver::Cgroupfs;
        assert_eq!(
            pod_cgroup(d, "/kubepods", QosClass::Guaranteed, UID),
            "/kubepods/pod1234-abcd-5678-efgh"
        );
        assert_eq!(
            pod_cgroup(d, "/kubepods", QosClass::Burstable, UID),
            "/kubepods/burstable/pod1234-abcd-5678-efgh"
        );
        assert_eq!(
            pod_cgroup(d, "/kubepods", QosClass::BestEffort, UID),
            "/kubepods/besteffort/pod1234-abcd-5678-efgh"
        );
    }

    #[test]
    fn systemd_names_are_the_kubelets_nested_slices_for_every_qos_class() {
        // the example in the kubelet's own CgroupName.ToSystemd documentation
        let d = CgroupDriver::Systemd;
        assert_eq!(
            pod_cgroup(d, "/kubepods", QosClass::Burstable, UID),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_abcd_5678_efgh.slice"
        );
        assert_eq!(
            pod_cgroup(d, "/kubepods", QosClass::BestEffort, UID),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234_abcd_5678_efgh.slice"
        );
        assert_eq!(
            pod_cgroup(d, "/kubepods", QosClass::Guaranteed, UID),
            "/kubepods.slice/kubepods-pod1234_abcd_5678_efgh.slice"
        );
    }

    #[test]
    fn slices_expand_as_systemd_expands_them() {
        assert_eq!(expand_slice("a.slice"), "/a.slice");
        assert_eq!(
            expand_slice("a-b-c.slice"),
            "/a.slice/a-b.slice/a-b-c.slice"
        );
    }

    #[test]
    fn drivers_parse_by_the_kubelets_names_only() {
        assert_eq!("systemd".parse(), Ok(CgroupDriver::Systemd));
        assert_eq!("cgroupfs".parse(), Ok(CgroupDriver::Cgroupfs));
        assert!("Systemd".parse::<CgroupDriver>().is_err());
        assert_eq!(CgroupDriver::default(), CgroupDriver::Cgroupfs);
    }

    #[test]
    fn the_runtimes_driver_wins_and_a_contradicting_setting_is_refused() {
        use CgroupDriver::{Cgroupfs, Systemd};
        assert_eq!(choose_driver(None, Some(Systemd)), Ok(Systemd));
        assert_eq!(choose_driver(Some(Systemd), Some(Systemd)), Ok(Systemd));
        assert_eq!(choose_driver(Some(Systemd), None), Ok(Systemd));
        assert_eq!(choose_driver(None, None), Ok(Cgroupfs));
        let e = choose_driver(Some(Systemd), Some(Cgroupfs)).unwrap_err();
        assert!(
            e.starts_with("cgroupDriver is systemd but the container runtime uses cgroupfs"),
            "{e}"
        );
    }

    #[test]
    fn removal_covers_the_pod_under_every_qos_class() {
        let all = pod_cgroups_any_qos(CgroupDriver::Systemd, "/kubepods", "u-1");
        assert_eq!(all.len(), 3);
        assert_eq!(
            all,
            [
                "/kubepods.slice/kubepods-podu_1.slice",
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podu_1.slice",
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podu_1.slice",
            ]
        );
    }
}
