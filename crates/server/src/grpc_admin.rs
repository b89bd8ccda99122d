//! `hone.admin.v1.Admin` on the gRPC port: traffic and rollout control, the
//! same actions as the REST admin routes, behind the admin key.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::auth::Access;
use crate::grpc::status;
use crate::proto::admin::admin_server::Admin;
use crate::proto::admin::*;
use crate::split::{ShadowTarget, Split};
use crate::state::ServerState;
use crate::traffic_admin::TrafficView;

pub use crate::proto::admin::admin_server::AdminServer;

pub struct AdminService {
    pub state: Arc<ServerState>,
}

impl AdminService {
    fn admin<T>(&self, r: &Request<T>) -> Result<(), Status> {
        crate::grpc::authorize(&self.state, r, Access::Admin)
    }
}

/// The traffic view as the typed message.
fn traffic(v: TrafficView) -> Traffic {
    let none = crate::split::Split::default();
    let split = v.split.as_deref().unwrap_or(&none);
    Traffic {
        model: v.model,
        source: v.source.into(),
        weights: split
            .weights
            .iter()
            .map(|(k, w)| (k.to_string(), *w))
            .collect(),
        labels: split.labels.clone().into_iter().collect(),
        sticky_header: split.sticky_header.clone().unwrap_or_default(),
        shadow: split.shadow.map(|s| Shadow {
            version: s.version,
            share: s.share,
        }),
        versions: v
            .versions
            .into_iter()
            .map(|r| VersionShare {
                version: r.version.to_string(),
                weight: r.weight.unwrap_or(0),
                share: r.share,
                success: r.success,
            })
            .collect(),
    }
}

fn rollout(s: &crate::rollout::Status) -> Result<RolloutStatus, Status> {
    Ok(RolloutStatus {
        model: s.model.clone(),
        from: s.from,
        to: s.to,
        state: s.state.into(),
        percent: s.percent,
        reason: s.reason.clone().unwrap_or_default(),
        json: serde_json::to_string(s)
            .map_err(|e| Status::internal(format!("rollout status as JSON: {e}")))?,
    })
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn get_traffic(&self, r: Request<ModelRef>) -> Result<Response<Traffic>, Status> {
        self.admin(&r)?;
        let v =
            crate::traffic_admin::view(&self.state.control, &r.get_ref().model).map_err(status)?;
        Ok(Response::new(traffic(v)))
    }

    async fn set_traffic(
        &self,
        r: Request<SetTrafficRequest>,
    ) -> Result<Response<Traffic>, Status> {
        self.admin(&r)?;
        let req = r.into_inner();
        let mut split = Split::default();
        for (v, w) in &req.weights {
            let v: i64 = v.parse().map_err(|_| {
                Status::invalid_argument(format!("weights: {v:?} is not a version number"))
            })?;
            split.weights.insert(v, *w);
        }
        split.labels = req.labels.into_iter().collect();
        let h = req.sticky_header.trim().to_ascii_lowercase();
        split.sticky_header = (!h.is_empty()).then_some(h);
        if let Some(s) = req.shadow {
            if !(0.0..=1.0).contains(&s.share) {
                return Err(Status::invalid_argument(
                    "shadow.share must be between 0 and 1",
                ));
            }
            split.shadow = Some(ShadowTarget {
                version: s.version,
                share: s.share,
            });
        }
        let v =
            crate::traffic_admin::set(&self.state.control, &req.model, split).map_err(status)?;
        Ok(Response::new(traffic(v)))
    }

    async fn clear_traffic(&self, r: Request<ModelRef>) -> Result<Response<Traffic>, Status> {
        self.admin(&r)?;
        let v =
            crate::traffic_admin::clear(&self.state.control, &r.get_ref().model).map_err(status)?;
        Ok(Response::new(traffic(v)))
    }

    async fn promote(&self, r: Request<ModelRef>) -> Result<Response<RolloutStatus>, Status> {
        self.admin(&r)?;
        let s = crate::rollout::decide(&self.state.control, &r.get_ref().model, true)
            .map_err(status)?;
        Ok(Response::new(rollout(&s)?))
    }

    async fn rollback(&self, r: Request<ModelRef>) -> Result<Response<RolloutStatus>, Status> {
        self.admin(&r)?;
        let s = crate::rollout::decide(&self.state.control, &r.get_ref().model, false)
            .map_err(status)?;
        Ok(Response::new(rollout(&s)?))
    }

    async fn get_rollout(&self, r: Request<ModelRef>) -> Result<Response<RolloutStatus>, Status> {
        self.admin(&r)?;
        let name = &r.get_ref().model;
        let s = self
            .state
            .control
            .rollouts
            .status(name)
            .ok_or_else(|| Status::not_found(format!("no rollout of '{name}'")))?;
        Ok(Response::new(rollout(&s)?))
    }
}
