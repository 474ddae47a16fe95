//! The certificate settings, with the kubelet's names and defaults: `--bootstrap-kubeconfig`,
//! `--rotate-certificates` (`rotateCertificates`, off), `--rotate-server-certificates`
//! (`serverTLSBootstrap`, off) and `--cert-dir` (`<root-dir>/pki`).

use std::path::{Path, PathBuf};

use super::{ConfigError, ConfigFile, env_bool};
use crate::cli::CertArgs;

/// The certificates podvisor keeps, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertSettings {
    /// Bootstrap credentials, for when the kubeconfig has no usable client certificate.
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// Renew the client certificate before it expires.
    pub rotate: bool,
    /// Request the node API's serving certificate.
    pub server_tls_bootstrap: bool,
    /// Where certificates are kept.
    pub cert_dir: PathBuf,
}

impl CertSettings {
    /// Whether podvisor manages the client certificate (bootstraps or rotates it), and so
    /// presents the one it keeps rather than the kubeconfig's.
    pub fn manages_client(&self) -> bool {
        self.rotate || self.bootstrap_kubeconfig.is_some()
    }
}

/// Validates the certificate settings. `kubeconfig`: one is set; `node_api`: the node API is
/// served.
pub fn certs(
    args: &CertArgs,
    file: &ConfigFile,
    env: &dyn Fn(&str) -> Option<String>,
    root_dir: &Path,
    kubeconfig: bool,
    node_api: bool,
) -> Result<CertSettings, ConfigError> {
    let bootstrap_kubeconfig = args
        .bootstrap_kubeconfig
        .clone()
        .or_else(|| env("PODVISOR_BOOTSTRAP_KUBECONFIG").map(PathBuf::from))
        .or(file.bootstrap_kubeconfig.clone())
        .filter(|p| !p.as_os_str().is_empty());
    let rotate = match args.rotate_certificates {
        Some(b) => b,
        None => env_bool("PODVISOR_ROTATE_CERTIFICATES", env)?
            .or(file.rotate_certificates)
            .unwrap_or(false),
    };
    let server_tls_bootstrap = match args.rotate_server_certificates {
        Some(b) => b,
        None => env_bool("PODVISOR_ROTATE_SERVER_CERTIFICATES", env)?
            .or(file.server_tls_bootstrap)
            .unwrap_or(false),
    };
    let cert_dir = args
        .cert_dir
        .clone()
        .or_else(|| env("PODVISOR_CERT_DIR").map(PathBuf::from))
        .or(file.cert_dir.clone())
        .unwrap_or_else(|| root_dir.join("pki"));
    let wanted = bootstrap_kubeconfig.is_some() || rotate || server_tls_bootstrap;
    if wanted && !kubeconfig {
        return Err(ConfigError::Certificates(
            "--bootstrap-kubeconfig, --rotate-certificates and serverTLSBootstrap need --kubeconfig",
        ));
    }
    if server_tls_bootstrap && !node_api {
        return Err(ConfigError::Certificates(
            "serverTLSBootstrap needs the node API",
        ));
    }
    Ok(CertSettings {
        bootstrap_kubeconfig,
        rotate,
        server_tls_bootstrap,
        cert_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn args(flags: &[&str]) -> CertArgs {
        let cli =
            Cli::try_parse_from(["podvisor", "run"].iter().chain(flags)).expect("valid flags");
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        run.certs
    }

    #[test]
    fn the_kubelets_defaults_rotate_nothing_and_keep_certificates_under_the_root_dir() {
        let c = certs(
            &args(&[]),
            &ConfigFile::default(),
            &no_env,
            Path::new("/r"),
            true,
            true,
        )
        .expect("valid");
        assert_eq!(
            c,
            CertSettings {
                cert_dir: "/r/pki".into(),
                ..CertSettings::default()
            }
        );
        assert!(!c.manages_client());
    }

    #[test]
    fn flags_as_the_kubelet_spells_them_beat_the_config_file() {
        let file = ConfigFile {
            rotate_certificates: Some(false),
            server_tls_bootstrap: Some(true),
            cert_dir: Some("/file/pki".into()),
            ..ConfigFile::default()
        };
        let a = args(&[
            "--rotate-certificates",
            "--bootstrap-kubeconfig",
            "/etc/kubernetes/bootstrap-kubelet.conf",
        ]);
        let c = certs(&a, &file, &no_env, Path::new("/r"), true, true).expect("valid");
        assert!(c.rotate && c.server_tls_bootstrap && c.manages_client());
        assert_eq!(c.cert_dir, PathBuf::from("/file/pki"));
        assert_eq!(
            c.bootstrap_kubeconfig,
            Some("/etc/kubernetes/bootstrap-kubelet.conf".into())
        );
        let off = args(&["--rotate-certificates=false"]);
        assert!(
            !certs(&off, &file, &no_env, Path::new("/r"), true, true)
                .expect("valid")
                .rotate
        );
    }

    #[test]
    fn certificates_need_a_kubeconfig_and_serving_ones_the_node_api() {
        let a = args(&["--rotate-certificates"]);
        let err = certs(
            &a,
            &ConfigFile::default(),
            &no_env,
            Path::new("/r"),
            false,
            true,
        )
        .expect_err("no kubeconfig");
        assert!(err.to_string().contains("need --kubeconfig"), "{err}");
        let a = args(&["--rotate-server-certificates"]);
        assert!(
            certs(
                &a,
                &ConfigFile::default(),
                &no_env,
                Path::new("/r"),
                true,
                false
            )
            .is_err()
        );
    }
}
