//! gRPC server reflection, checked with a reflection client from another implementation
//! (Python's grpcio-reflection, driven by tests/e2e/reflection_client.py).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::process::output_within;
use common::{TestScaler, python};

/// Proves that a stock reflection client, the kind `grpcurl list` and `grpcurl describe`
/// are, can find and fully describe every service the scaler serves over
/// `grpc.reflection.v1`: it lists exactly KEDA's `externalscaler.ExternalScaler`, the
/// scaler's own `pgqueuescaler.v1.Inspection`, the standard `grpc.health.v1.Health` and the
/// reflection service itself; every method of each resolves to its input and output message
/// types with the right streaming flags;
/// and every message reachable from them, map entries included, resolves with exactly
/// its declared fields (so KEDA's `*Float` fields and `scalerMetadata` are visible).
/// It also pins which reflection versions are served: v1 for current clients and v1alpha
/// for those that speak only it (grpcio-reflection's own client, older grpcurl releases);
/// the script checks that both describe the same services.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_reflection_client_describes_every_service() {
    let scaler = TestScaler::start(&[]).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/reflection_client.py");
    let mut command = Command::new(python());
    command
        .arg(script)
        .args(["--target", &scaler.addr.to_string(), "--timeout", "10"]);
    // The script bounds itself (a deadline on every call, an alarm for the whole run);
    // this bound is the backstop.
    let output = output_within(command, Duration::from_secs(90), "reflection_client.py").await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "reflection_client.py failed ({}): {}\nstdout:\n{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let of_kind = |kind: &str| -> Vec<&str> {
        lines
            .iter()
            .copied()
            .filter(|line| line.starts_with(kind))
            .collect()
    };

    assert_eq!(
        of_kind("reflection "),
        [
            "reflection grpc.reflection.v1.ServerReflection served",
            "reflection grpc.reflection.v1alpha.ServerReflection served",
        ],
        "reflection versions served\n{stdout}"
    );
    assert_eq!(
        of_kind("service "),
        [
            "service externalscaler.ExternalScaler",
            "service grpc.health.v1.Health",
            "service grpc.reflection.v1.ServerReflection",
            "service grpc.reflection.v1alpha.ServerReflection",
            "service pgqueuescaler.v1.Inspection",
        ],
        "listed services\n{stdout}"
    );

    let method = |service: &str, name: &str, input: &str, output: &str, streams: [bool; 2]| {
        format!(
            "method {service}/{name} input={input} output={output} \
             client_streaming={} server_streaming={}",
            streams[0], streams[1]
        )
    };
    let scaler_service = "externalscaler.ExternalScaler";
    let reference = "externalscaler.ScaledObjectRef";
    let unary = [false, false];
    let server_streaming = [false, true];
    let expected_methods = [
        method(
            scaler_service,
            "GetMetricSpec",
            reference,
            "externalscaler.GetMetricSpecResponse",
            unary,
        ),
        method(
            scaler_service,
            "GetMetrics",
            "externalscaler.GetMetricsRequest",
            "externalscaler.GetMetricsResponse",
            unary,
        ),
        method(
            scaler_service,
            "IsActive",
            reference,
            "externalscaler.IsActiveResponse",
            unary,
        ),
        method(
            scaler_service,
            "StreamIsActive",
            reference,
            "externalscaler.IsActiveResponse",
            server_streaming,
        ),
        method(
            scaler_service,
            "StreamMetricSpec",
            reference,
            "externalscaler.GetMetricSpecResponse",
            server_streaming,
        ),
        method(
            "grpc.health.v1.Health",
            "Check",
            "grpc.health.v1.HealthCheckRequest",
            "grpc.health.v1.HealthCheckResponse",
            unary,
        ),
        method(
            "grpc.health.v1.Health",
            "Watch",
            "grpc.health.v1.HealthCheckRequest",
            "grpc.health.v1.HealthCheckResponse",
            server_streaming,
        ),
        method(
            "grpc.reflection.v1.ServerReflection",
            "ServerReflectionInfo",
            "grpc.reflection.v1.ServerReflectionRequest",
            "grpc.reflection.v1.ServerReflectionResponse",
            [true, true],
        ),
        method(
            "grpc.reflection.v1alpha.ServerReflection",
            "ServerReflectionInfo",
            "grpc.reflection.v1alpha.ServerReflectionRequest",
            "grpc.reflection.v1alpha.ServerReflectionResponse",
            [true, true],
        ),
        method(
            "pgqueuescaler.v1.Inspection",
            "Explain",
            reference,
            "pgqueuescaler.v1.Explanation",
            unary,
        ),
        method(
            "pgqueuescaler.v1.Inspection",
            "ListQueues",
            "pgqueuescaler.v1.ListQueuesRequest",
            "pgqueuescaler.v1.ListQueuesResponse",
            unary,
        ),
    ];
    assert_eq!(
        of_kind("method "),
        expected_methods,
        "resolved methods\n{stdout}"
    );

    // Every message reachable from the scaler's and health's methods, with its fields
    // in declaration order. (The reflection service's own messages are resolved too;
    // only their presence is checked below.)
    let messages: Vec<&str> = of_kind("message ")
        .into_iter()
        .filter(|line| !line.starts_with("message grpc.reflection."))
        .collect();
    assert_eq!(
        messages,
        [
            "message externalscaler.GetMetricSpecResponse metricSpecs",
            "message externalscaler.GetMetricsRequest scaledObjectRef,metricName",
            "message externalscaler.GetMetricsResponse metricValues",
            "message externalscaler.IsActiveResponse result",
            "message externalscaler.MetricSpec metricName,targetSize,targetSizeFloat",
            "message externalscaler.MetricValue metricName,metricValue,metricValueFloat",
            "message externalscaler.ScaledObjectRef name,namespace,scalerMetadata",
            "message externalscaler.ScaledObjectRef.ScalerMetadataEntry key,value",
            "message grpc.health.v1.HealthCheckRequest service",
            "message grpc.health.v1.HealthCheckResponse status",
            "message pgqueuescaler.v1.Answers \
             metric_name,target,active,active_error,metric_value,metric_error",
            "message pgqueuescaler.v1.Counts enqueued,pending,delayed_due,depth",
            "message pgqueuescaler.v1.Explanation \
             source,snapshot,trigger,queues,totals,answers,steps,latest_version",
            "message pgqueuescaler.v1.ListQueuesRequest namespace,database,schema,queue",
            "message pgqueuescaler.v1.ListQueuesResponse sources",
            "message pgqueuescaler.v1.Queue \
             name,config,counts,groups,oldest_waiting_seconds,desired_replicas",
            "message pgqueuescaler.v1.QueueConfig application,worker_concurrency,concurrency,\
             partition_concurrency,partition_worker_concurrency",
            "message pgqueuescaler.v1.QueueStep name,counts,config,limits_applied,runnable,\
             partition_workers,worker_concurrency,worker_concurrency_from,replicas,\
             oldest_waiting_seconds,all_work",
            "message pgqueuescaler.v1.Refusal code,message",
            "message pgqueuescaler.v1.Snapshot read,age_seconds,attempts,last_error",
            "message pgqueuescaler.v1.Source database,schema,system,migration,records,lacks",
            "message pgqueuescaler.v1.SourceQueues source,snapshot,queues",
            "message pgqueuescaler.v1.Totals depth,runnable,replicas,oldest_waiting_seconds",
            "message pgqueuescaler.v1.Trigger queues,aggregate,metric,activation_threshold,\
             application,application_version,delayed_lookahead_seconds,concurrency_limits,\
             worker_concurrency",
            "message pgqueuescaler.v1.WorkGroup application,version,counts,oldest_waiting_seconds",
        ],
        "resolved messages\n{stdout}"
    );
    for (version, name) in [
        ("v1", "ServerReflectionRequest"),
        ("v1", "ServerReflectionResponse"),
        ("v1alpha", "ServerReflectionRequest"),
        ("v1alpha", "ServerReflectionResponse"),
    ] {
        let prefix = format!("message grpc.reflection.{version}.{name} ");
        assert!(
            lines.iter().any(|line| line.starts_with(&prefix)),
            "{prefix}is resolved\n{stdout}"
        );
    }

    scaler.stop().await.unwrap();
}
