//! The node's `InternalIP` addresses, picked as the kubelet picks them without a cloud
//! provider: the `--node-ip` addresses when given (each must be an address of this host);
//! otherwise the node name when it is an IP; otherwise the first address the node name
//! resolves to that is usable and local; otherwise the address of the default route's
//! interface. IPv4 is preferred unless `--node-ip ::` asks for IPv6.

use std::net::{IpAddr, ToSocketAddrs};

use thiserror::Error;

/// Why the node's addresses cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AddressError {
    /// A `--node-ip` the host does not have.
    #[error("--node-ip {ip}: not an address of this host's network interfaces ({local})")]
    NotLocal {
        /// The address.
        ip: IpAddr,
        /// The host's addresses, listed.
        local: String,
    },
}

/// An address the kubelet accepts as a node IP: not loopback, link-local, multicast or
/// unspecified.
pub fn usable(ip: &IpAddr) -> bool {
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    !(ip.is_loopback() || ip.is_multicast() || ip.is_unspecified() || link_local)
}

/// The host facts the choice depends on.
pub struct Lookup<'a> {
    /// The host's interface addresses.
    pub local: &'a [IpAddr],
    /// What a name resolves to.
    pub resolve: &'a dyn Fn(&str) -> Vec<IpAddr>,
    /// The default route's source address, per family preference (IPv6 when `true`).
    pub default_route: &'a dyn Fn(bool) -> Option<IpAddr>,
}

/// The node's InternalIPs, primary first; empty when none can be found.
pub fn choose(
    node_ips: &[IpAddr],
    node_name: &str,
    host: &Lookup<'_>,
) -> Result<Vec<IpAddr>, AddressError> {
    let explicit: Vec<IpAddr> = node_ips
        .iter()
        .copied()
        .filter(|ip| !ip.is_unspecified())
        .collect();
    if !explicit.is_empty() {
        if let Some(ip) = explicit.iter().find(|ip| !host.local.contains(ip)) {
            let local: Vec<String> = host.local.iter().map(IpAddr::to_string).collect();
            return Err(AddressError::NotLocal {
                ip: *ip,
                local: local.join(", "),
            });
        }
        return Ok(explicit);
    }
    let want_v6 = node_ips.first().is_some_and(IpAddr::is_ipv6);
    if let Ok(ip) = node_name.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let resolved = (host.resolve)(node_name)
        .into_iter()
        .find(|ip| ip.is_ipv6() == want_v6 && usable(ip) && host.local.contains(ip));
    Ok(resolved
        .or_else(|| (host.default_route)(want_v6))
        .into_iter()
        .collect())
}

/// The host's interface addresses.
pub fn local_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| a.address)
        .filter_map(|a| {
            a.as_sockaddr_in()
                .map(|s| IpAddr::V4(s.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
        })
        .collect()
}

/// What `name` resolves to (`/etc/hosts`, then DNS, as the resolver is configured).
pub fn resolve(name: &str) -> Vec<IpAddr> {
    (name, 0)
        .to_socket_addrs()
        .map(|a| a.map(|s| s.ip()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn pick(
        node_ips: &[&str],
        name: &str,
        resolves_to: &[&str],
    ) -> Result<Vec<IpAddr>, AddressError> {
        let local = [
            ip("127.0.0.1"),
            ip("10.0.0.5"),
            ip("192.168.1.10"),
            ip("fd00::5"),
        ];
        let resolved: Vec<IpAddr> = resolves_to.iter().map(|s| ip(s)).collect();
        let resolve = move |_: &str| resolved.clone();
        let default_route = |v6: bool| Some(if v6 { ip("fd00::5") } else { ip("10.0.0.5") });
        let node_ips: Vec<IpAddr> = node_ips.iter().map(|s| ip(s)).collect();
        choose(
            &node_ips,
            name,
            &Lookup {
                local: &local,
                resolve: &resolve,
                default_route: &default_route,
            },
        )
    }

    #[test]
    fn given_node_ips_are_used_as_given_when_the_host_has_them() {
        assert_eq!(
            pick(&["192.168.1.10", "fd00::5"], "n1", &[]),
            Ok(vec![ip("192.168.1.10"), ip("fd00::5")])
        );
    }

    #[test]
    fn a_node_ip_the_host_does_not_have_is_refused_naming_it() {
        let e = pick(&["10.9.9.9"], "n1", &[]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--node-ip 10.9.9.9: not an address"),
            "{e}"
        );
        assert!(e.to_string().contains("192.168.1.10"), "{e}");
    }

    #[test]
    fn without_node_ip_the_names_first_usable_local_address_wins_over_the_default_route() {
        assert_eq!(
            pick(&[], "n1", &["127.0.1.1", "10.9.9.9", "192.168.1.10"]),
            Ok(vec![ip("192.168.1.10")]),
            "loopback and addresses of other hosts are passed over"
        );
    }

    #[test]
    fn a_name_that_resolves_only_to_loopback_falls_back_to_the_default_route() {
        assert_eq!(pick(&[], "n1", &["127.0.0.1"]), Ok(vec![ip("10.0.0.5")]));
        assert_eq!(pick(&["::"], "n1", &["127.0.0.1"]), Ok(vec![ip("fd00::5")]));
    }

    #[test]
    fn a_node_name_that_is_an_ip_is_the_address() {
        assert_eq!(pick(&[], "192.168.7.7", &[]), Ok(vec![ip("192.168.7.7")]));
    }

    #[test]
    fn loopback_link_local_and_multicast_are_not_node_addresses() {
        for bad in [
            "127.0.0.1",
            "169.254.1.1",
            "fe80::1",
            "224.0.0.1",
            "0.0.0.0",
            "::1",
        ] {
            assert!(!usable(&ip(bad)), "{bad}");
        }
        assert!(usable(&ip("10.0.0.1")));
    }
}
