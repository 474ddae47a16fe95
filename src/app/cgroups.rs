//! The cgroup driver, settled at start-up as the kubelet settles it: the runtime is asked
//! (CRI `RuntimeConfig`, three tries two seconds apart while it is starting), its answer
//! wins, and a configured driver it contradicts stops podvisor before any pod is touched.

use std::time::Duration;

use tracing::{info, warn};

use crate::pod::CgroupDriver;
use crate::pod::cgroups::choose_driver;
use crate::runtime::CriRuntime;

/// How many times the runtime is asked, and how long apart (the kubelet's).
const TRIES: u32 = 3;
const APART: Duration = Duration::from_secs(2);

/// The driver to name pod cgroups for.
pub async fn settle(
    runtime: &CriRuntime,
    configured: Option<CgroupDriver>,
) -> anyhow::Result<CgroupDriver> {
    let mut said = None;
    for attempt in 1..=TRIES {
        match runtime.cgroup_driver().await {
            Ok(answer) => {
                said = Some(answer);
                break;
            }
            Err(e) if attempt < TRIES => {
                warn!(error = %e, "runtime did not say its cgroup driver yet; asking again");
                tokio::time::sleep(APART).await;
            }
            Err(e) => warn!(
                error = %e,
                configured = %configured.unwrap_or_default(),
                "runtime did not say its cgroup driver; using the configured one"
            ),
        }
    }
    let driver = choose_driver(configured, said.flatten()).map_err(anyhow::Error::msg)?;
    match said {
        Some(Some(_)) => info!(cgroup_driver = %driver, "using the cgroup driver the runtime uses"),
        Some(None) => info!(
            cgroup_driver = %driver,
            "runtime does not say its cgroup driver (no CRI RuntimeConfig); using the configured one"
        ),
        None => {}
    }
    Ok(driver)
}
