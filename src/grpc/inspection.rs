//! The `pgqueuescaler.v1.Inspection` service: `Explain` and `ListQueues`, under the same
//! access rules, caps and accounting as KEDA's calls, and answered from the same snapshots.

use tonic::{Request, Response, Status};

use super::explain::{self, explain};
use super::pgqueuescaler::v1;
use super::pgqueuescaler::v1::inspection_server::Inspection;
use super::proto::ScaledObjectRef;
use super::scaler::ScalerService;
use crate::snapshot::SourceView;
use crate::trigger::ConnectionRef;

/// The `Inspection` implementation, sharing the KEDA service's parsed triggers, snapshots
/// and rules.
#[derive(Clone)]
pub(crate) struct InspectionService {
    scaler: ScalerService,
}

impl InspectionService {
    /// Inspection of what `scaler` answers.
    pub(crate) fn new(scaler: ScalerService) -> Self {
        Self { scaler }
    }

    /// A source's queues for `request`, if the request may see it: a database from the
    /// configuration that the namespace may use, matching the filters. Sources that only a
    /// trigger's own URL names stay with that trigger.
    fn listed(
        &self,
        view: SourceView,
        request: &v1::ListQueuesRequest,
    ) -> Option<v1::SourceQueues> {
        let ConnectionRef::Named(name) = &view.key.connection else {
            return None;
        };
        let wanted = (request.database.is_empty() || request.database == *name)
            && (request.schema.is_empty() || request.schema == view.key.schema)
            && self.scaler.access().may_use(name, &request.namespace);
        if !wanted {
            return None;
        }
        Some(explain::source_queues(&view, &request.queue))
    }
}

#[tonic::async_trait]
impl Inspection for InspectionService {
    async fn explain(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<v1::Explanation>, Status> {
        let reference = request.into_inner();
        self.scaler
            .observe("Explain", &reference, async {
                let parsed = self.scaler.trigger(&reference)?;
                let observed = self.scaler.snapshots().observe(&parsed.trigger).await?;
                Ok(explain(&parsed.trigger, &parsed.metric_name, observed))
            })
            .await
    }

    async fn list_queues(
        &self,
        request: Request<v1::ListQueuesRequest>,
    ) -> Result<Response<v1::ListQueuesResponse>, Status> {
        let request = request.into_inner();
        // For the refusal log: the namespace is who asked.
        let reference = ScaledObjectRef {
            namespace: request.namespace.clone(),
            ..ScaledObjectRef::default()
        };
        self.scaler
            .observe("ListQueues", &reference, async {
                let mut views = self.scaler.snapshots().in_use();
                views.sort_by(|a, b| (&a.label, &a.key.schema).cmp(&(&b.label, &b.key.schema)));
                let sources = views
                    .into_iter()
                    .filter_map(|view| self.listed(view, &request))
                    .collect();
                Ok(v1::ListQueuesResponse { sources })
            })
            .await
    }
}
