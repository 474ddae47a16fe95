//! What the Node's status is computed with, by the kubelet's names: `--node-ip` (flag only, as
//! the kubelet's), `--eviction-hard` / `evictionHard` and
//! `evictionPressureTransitionPeriod`.

use std::net::IpAddr;
use std::time::Duration;

use super::{ConfigError, ConfigFile, duration};
use crate::cli::NodeStatusArgs;
use crate::health::Thresholds;
use crate::health::pressure::TRANSITION_PERIOD;

/// The node status settings, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeStatusSettings {
    /// `--node-ip`: up to two addresses, one per family (empty: picked as the kubelet picks).
    pub node_ips: Vec<IpAddr>,
    /// The hard eviction thresholds deciding the pressure conditions.
    pub eviction_hard: Thresholds,
    /// How long a pressure condition stays after its threshold was last met.
    pub pressure_transition: Duration,
}

impl Default for NodeStatusSettings {
    /// The kubelet's: addresses picked, its eviction thresholds, a 5-minute transition.
    fn default() -> NodeStatusSettings {
        NodeStatusSettings {
            node_ips: Vec::new(),
            eviction_hard: Thresholds::default(),
            pressure_transition: TRANSITION_PERIOD,
        }
    }
}

/// Parses `--node-ip`: one address, or two of different families (dual-stack), as the
/// kubelet takes it. `0.0.0.0` or `::` alone picks an address of that family.
pub fn parse_node_ips(s: &str) -> Result<Vec<IpAddr>, ConfigError> {
    let bad = |why: &str| ConfigError::NodeIp(s.to_owned(), why.to_owned());
    let ips = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<IpAddr>()
                .map_err(|_| bad(&format!("{p:?} is not an IP address")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    match ips.as_slice() {
        [] | [_] => {}
        [a, b] if a.is_ipv6() != b.is_ipv6() && !a.is_unspecified() && !b.is_unspecified() => {}
        [_, _] => return Err(bad("two addresses must be one IPv4 and one IPv6")),
        _ => return Err(bad("at most two addresses (one per family)")),
    }
    if let Some(ip) = ips
        .iter()
        .find(|ip| !ip.is_unspecified() && !crate::host::addresses::usable(ip))
    {
        return Err(bad(&format!(
            "{ip} is a loopback, link-local or multicast address"
        )));
    }
    Ok(ips)
}

/// The settings from the flags, the environment and the file.
pub fn node_status(
    args: &NodeStatusArgs,
    file: &ConfigFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<NodeStatusSettings, ConfigError> {
    let node_ips = match args.node_ip.clone().or_else(|| env("PODVISOR_NODE_IP")) {
        Some(s) => parse_node_ips(&s)?,
        None => Vec::new(),
    };
    let eviction_hard = match (&args.eviction_hard, &file.eviction_hard) {
        (Some(flag), _) => Thresholds::parse_flag(flag),
        (None, Some(map)) => Thresholds::from_map(map),
        (None, None) => Ok(Thresholds::default()),
    }
    .map_err(|e| ConfigError::Eviction(e.to_string()))?;
    let pressure_transition = duration(
        "evictionPressureTransitionPeriod",
        args.eviction_pressure_transition_period
            .clone()
            .or_else(|| file.eviction_pressure_transition_period.clone()),
        TRANSITION_PERIOD,
        Duration::ZERO,
        Duration::from_secs(24 * 3600),
    )?;
    Ok(NodeStatusSettings {
        node_ips,
        eviction_hard,
        pressure_transition,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn node_ip_takes_one_address_or_one_of_each_family() {
        assert_eq!(
            parse_node_ips("10.0.0.5"),
            Ok(vec!["10.0.0.5".parse().expect("ip")])
        );
        assert_eq!(parse_node_ips("10.0.0.5,fd00::5").map(|v| v.len()), Ok(2));
        assert_eq!(parse_node_ips("::").map(|v| v.len()), Ok(1));
        for bad in [
            "10.0.0.5,10.0.0.6",
            "10.0.0.x",
            "127.0.0.1",
            "a,b,c",
            "fe80::1",
        ] {
            let e = parse_node_ips(bad).expect_err(bad);
            assert!(e.to_string().starts_with("--node-ip "), "{e}");
        }
    }

    #[test]
    fn eviction_thresholds_come_from_the_flag_over_the_file_over_the_kubelets_defaults() {
        let none = |_: &str| None;
        let mut file = ConfigFile::default();
        let s = node_status(&NodeStatusArgs::default(), &file, &none).expect("defaults");
        assert_eq!(s.eviction_hard, Thresholds::default());
        assert_eq!(s.pressure_transition, Duration::from_secs(300));
        file.eviction_hard = Some(BTreeMap::from([("memory.available".into(), "1Gi".into())]));
        file.eviction_pressure_transition_period = Some("30s".into());
        let s = node_status(&NodeStatusArgs::default(), &file, &none).expect("file");
        assert_eq!(s.eviction_hard.iter().count(), 1);
        assert_eq!(s.pressure_transition, Duration::from_secs(30));
        let args = NodeStatusArgs {
            eviction_hard: Some("nodefs.available<5%,pid.available<1000".into()),
            ..NodeStatusArgs::default()
        };
        let s = node_status(&args, &file, &none).expect("flag");
        assert_eq!(s.eviction_hard.iter().count(), 2);
        let args = NodeStatusArgs {
            eviction_hard: Some("disk.free<5%".into()),
            ..NodeStatusArgs::default()
        };
        let e = node_status(&args, &file, &none).expect_err("unknown signal");
        assert!(e.to_string().contains("disk.free"), "{e}");
    }
}
