//! KEDA's `externalscaler.ExternalScaler` service. Each RPC parses the trigger, asks the
//! snapshot registry for numbers and converts the answer; see the KEDA notes in the README
//! for why each answer has the shape it has.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::proto::external_scaler_server::ExternalScaler;
use super::proto::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
    MetricValue, ScaledObjectRef,
};
use crate::access::AccessPolicy;
use crate::caps::CallCaps;
use crate::error::Error;
use crate::evaluate::evaluate;
use crate::grpc::hygiene::ConnectionInfo;
use crate::grpc::status::{CallError, code_of};
use crate::grpc::trigger_cache::{Parsed, TriggerCache};
use crate::metric_name;
use crate::metrics::Metrics;
use crate::quote::{Clipped, Quoted};
use crate::snapshot::Snapshots;
use crate::trigger::Trigger;

/// The `ExternalScaler` implementation.
#[derive(Clone)]
pub(crate) struct ScalerService {
    triggers: Arc<TriggerCache>,
    snapshots: Snapshots,
    access: AccessPolicy,
    caps: CallCaps,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
}

impl ScalerService {
    /// A service answering from `snapshots` under `access`; streams end cleanly when
    /// `shutdown` turns true.
    pub(crate) fn new(
        snapshots: Snapshots,
        access: AccessPolicy,
        caps: CallCaps,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            triggers: Arc::default(),
            snapshots,
            access,
            caps,
            metrics,
            shutdown,
        }
    }

    /// The snapshots answers come from.
    pub(super) fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }

    /// The access rules calls are held to.
    pub(super) fn access(&self) -> &AccessPolicy {
        &self.access
    }

    /// The parsed trigger, with the access policy applied: the first step of every RPC.
    pub(super) fn trigger(&self, reference: &ScaledObjectRef) -> Result<Arc<Parsed>, Error> {
        let parsed = self.triggers.get(&reference.scaler_metadata)?;
        self.access.check(&parsed.trigger, &reference.namespace)?;
        Ok(parsed)
    }

    /// Runs one RPC, logs a refusal with the ScaledObject it was for, and counts the call
    /// by method and status code. The span around the call is at debug level: at the
    /// default level only refusals are logged, and they carry the same fields themselves,
    /// so the span is not built (and its fields not formatted) for every call.
    pub(super) async fn observe<T>(
        &self,
        method: &'static str,
        reference: &ScaledObjectRef,
        handler: impl Future<Output = Result<T, CallError>>,
    ) -> Result<Response<T>, Status> {
        let span = tracing::debug_span!(
            "rpc",
            method,
            namespace = %Clipped(&reference.namespace),
            scaled_object = %Clipped(&reference.name)
        );
        let started = Instant::now();
        let result = async move {
            let answer = match self.caps.call() {
                Ok(_slot) => handler.await,
                Err(exhausted) => Err(CallError::from(exhausted)),
            };
            match answer {
                Ok(answer) => Ok(Response::new(answer)),
                Err(error) => {
                    tracing::info!(
                        method,
                        namespace = %Clipped(&reference.namespace),
                        scaled_object = %Clipped(&reference.name),
                        kind = error.kind(),
                        %error,
                        "request refused"
                    );
                    Err(Status::from(error))
                }
            }
        }
        .instrument(span)
        .await;
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        self.metrics.record_rpc(method, code, started.elapsed());
        result
    }
}

#[tonic::async_trait]
impl ExternalScaler for ScalerService {
    async fn is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<IsActiveResponse>, Status> {
        let reference = request.into_inner();
        self.observe("IsActive", &reference, async {
            let parsed = self.trigger(&reference)?;
            let trigger = &parsed.trigger;
            let snapshot = self.snapshots.latest(trigger).await?;
            Ok(IsActiveResponse {
                result: evaluate(trigger, &snapshot)?.active,
            })
        })
        .await
    }

    type StreamIsActiveStream = ActivityPushes;

    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        let connection = request.extensions().get::<ConnectionInfo>().cloned();
        let reference = request.into_inner();
        self.observe("StreamIsActive", &reference, async {
            let trigger = self.trigger(&reference)?.trigger.clone();
            let peer = connection.as_ref().and_then(|info| info.remote_addr);
            // The stream keeps its connection open past idle_timeout while it lasts.
            let slot = StreamHolds {
                _cap: self.caps.stream(peer)?,
                _activity: connection.map(|info| info.activity.hold()),
            };
            let source = self.snapshots.watch(&trigger)?;
            let span = tracing::debug_span!(
                "stream",
                namespace = %Clipped(&reference.namespace),
                scaled_object = %Clipped(&reference.name)
            );
            Ok(activity_pushes(Pushing {
                trigger,
                source,
                shutdown: self.shutdown.clone(),
                last_sent: None,
                ended: false,
                span,
                _slot: slot,
            }))
        })
        .await
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        let reference = request.into_inner();
        self.observe("GetMetricSpec", &reference, async {
            // From metadata and configuration alone: no database I/O, so the HPA can be
            // built (and KEDA's fallback can work) while Postgres is down.
            let parsed = self.trigger(&reference)?;
            self.snapshots.check_database(&parsed.trigger)?;
            let target = parsed.trigger.metric.target();
            Ok(GetMetricSpecResponse {
                metric_specs: vec![MetricSpec {
                    metric_name: parsed.metric_name.clone(),
                    // The integer is for KEDA before 2.17; rounded up, it is at least 1.
                    target_size: target.ceil() as i64,
                    target_size_float: target,
                }],
            })
        })
        .await
    }

    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        let request = request.into_inner();
        let reference = request.scaled_object_ref.unwrap_or_default();
        self.observe("GetMetrics", &reference, async {
            let parsed = self.trigger(&reference)?;
            if !metric_name::matches(&parsed.metric_name, &request.metric_name) {
                return Err(Error::UnknownMetric {
                    requested: Quoted::new(&request.metric_name),
                    expected: parsed.metric_name.clone(),
                }
                .into());
            }
            let trigger = &parsed.trigger;
            let snapshot = self.snapshots.latest(trigger).await?;
            let value = evaluate(trigger, &snapshot)?.metric_value(trigger.metric)?;
            Ok(GetMetricsResponse {
                metric_values: vec![MetricValue {
                    metric_name: request.metric_name.clone(),
                    // Whole numbers are exact in both; a latency's integer is rounded up
                    // for KEDA before 2.17, which reads only the integer.
                    metric_value: value.ceil() as i64,
                    metric_value_float: value,
                }],
            })
        })
        .await
    }

    type StreamMetricSpecStream = tokio_stream::Empty<Result<GetMetricSpecResponse, Status>>;

    async fn stream_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamMetricSpecStream>, Status> {
        let reference = request.into_inner();
        // KEDA treats Unimplemented as "keep calling GetMetricSpec", which is what we want.
        self.observe("StreamMetricSpec", &reference, async {
            Err(CallError::Unimplemented(
                "StreamMetricSpec is not implemented; KEDA falls back to GetMetricSpec",
            ))
        })
        .await
    }
}

/// The messages of one `StreamIsActive` stream. The stream is polled by the connection's
/// own task as it sends, so an open stream costs its state and nothing more: no task and no
/// channel of its own (KEDA keeps one open per external-push ScaledObject, for good).
pub(crate) type ActivityPushes =
    Pin<Box<dyn Stream<Item = Result<IsActiveResponse, Status>> + Send + 'static>>;

/// Holds a stream's place under the stream caps, and its connection open past
/// `idle_timeout`, until the stream ends or the client goes away.
struct StreamHolds {
    _cap: crate::caps::StreamSlot,
    _activity: Option<crate::grpc::hygiene::StreamHold>,
}

/// What a stream carries from one message to the next.
struct Pushing {
    trigger: Trigger,
    source: crate::snapshot::SourceWatch,
    shutdown: watch::Receiver<bool>,
    last_sent: Option<bool>,
    ended: bool,
    span: tracing::Span,
    _slot: StreamHolds,
}

/// Sends the trigger's activity when known and again on every change. While the source
/// cannot be read it sends nothing (polled `IsActive` reports why) and stays open; a trigger
/// that can never be answered from what was read (a queue DBOS does not know, a key the
/// schema cannot honour) ends the stream with the status `IsActive` gives, so that KEDA
/// logs it. Ends cleanly, which KEDA sees as a clean end of stream, on shutdown; when the
/// client goes away the stream is dropped, and its hold on the source with it.
fn activity_pushes(pushing: Pushing) -> ActivityPushes {
    Box::pin(futures_util::stream::unfold(pushing, |mut pushing| {
        let span = pushing.span.clone();
        async move {
            if pushing.ended {
                return None;
            }
            loop {
                match pushing
                    .source
                    .current(&pushing.trigger)
                    .and_then(|snapshot| evaluate(&pushing.trigger, &snapshot))
                {
                    Ok(evaluation) if pushing.last_sent != Some(evaluation.active) => {
                        let active = evaluation.active;
                        tracing::debug!(active, "pushed activity");
                        pushing.last_sent = Some(active);
                        return Some((Ok(IsActiveResponse { result: active }), pushing));
                    }
                    Ok(_) => {}
                    Err(error) if is_temporary(&error) => {}
                    Err(error) => {
                        tracing::info!(
                            kind = error.kind(),
                            %error,
                            "stream ended: the trigger cannot be answered"
                        );
                        pushing.ended = true;
                        return Some((Err(Status::from(error)), pushing));
                    }
                }
                tokio::select! {
                    alive = pushing.source.changed() => if !alive { return None },
                    () = crate::sync::until_set(&mut pushing.shutdown) => return None,
                }
            }
        }
        .instrument(span)
    }))
}

/// Whether `error` may clear up by itself on a later read: the database could not be read,
/// or not yet for this trigger.
fn is_temporary(error: &Error) -> bool {
    code_of(error) == tonic::Code::Unavailable
}
