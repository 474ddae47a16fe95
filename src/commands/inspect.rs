//! `podvisor inspect POD`: one pod in full, as YAML.

use crate::api::client::{ClientError, get_json};
use crate::api::views::PodDetail;
use crate::cli::InspectArgs;

/// Runs `podvisor inspect`.
pub async fn run(args: &InspectArgs) -> Result<String, ClientError> {
    let path = format!("/pods/{}", args.pod.replace('/', "%2F"));
    let detail: PodDetail = get_json(&super::socket(&args.client), &path).await?;
    serde_saphyr::to_string(&detail).map_err(|e| ClientError::Decode(e.to_string()))
}
