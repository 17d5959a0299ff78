#!/usr/bin/env python3
"""Describes a gRPC server through server reflection, the way grpcurl-style tools
do, using a real client from another implementation: grpcio-reflection's
ProtoReflectionDescriptorDatabase feeding protobuf's DescriptorPool (both pinned
in requirements.txt). Used by pg-queue-scaler's tests/reflection.rs.

Usage: reflection_client.py --target HOST:PORT [--timeout SECONDS]

grpcio-reflection's client only speaks grpc.reflection.v1alpha. The v1 protocol
is the same messages under another package name, so the same stock client is
also pointed at grpc.reflection.v1.ServerReflection by a channel interceptor
that rewrites the method path (and puts a deadline on every call).

For each of v1 and v1alpha the server either answers (it is "served") or says
UNIMPLEMENTED. v1 must be served. Over each served version, every listed service
is resolved: its methods' input and output types and, recursively, the message
types of their fields. If both are served they must describe every service other
than the reflection services themselves identically; the output is the union.

Output on stdout, one fact per line, sorted within each kind:
    reflection <reflection service> served|unimplemented
    service <full name>
    method <service>/<method> input=<type> output=<type> client_streaming=<bool> server_streaming=<bool>
    message <full name> <field>,<field>,...   (fields in declaration order)
On failure: a message on stderr and exit status 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import collections
import signal
import sys

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

V1 = "grpc.reflection.v1.ServerReflection"
V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"


class Failure(Exception):
    pass


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class _Route(grpc.StreamStreamClientInterceptor):
    """Sends the stock (v1alpha) client's calls to `service`, each with a deadline."""

    def __init__(self, service: str, timeout: float):
        self._service = service
        self._timeout = timeout

    def intercept_stream_stream(self, continuation, details, request_iterator):
        method = details.method.replace(f"/{V1ALPHA}/", f"/{self._service}/", 1)
        return continuation(
            _CallDetails(
                method,
                self._timeout,
                details.metadata,
                details.credentials,
                details.wait_for_ready,
                details.compression,
            ),
            request_iterator,
        )


def describe(channel: grpc.Channel, service: str, timeout: float) -> set[str] | None:
    """The description over reflection `service`, or None if it is unimplemented."""
    database = ProtoReflectionDescriptorDatabase(
        grpc.intercept_channel(channel, _Route(service, timeout))
    )
    try:
        services = sorted(database.get_services())
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.UNIMPLEMENTED:
            return None
        raise
    if not services:
        raise Failure(f"{service} lists no services")
    pool = DescriptorPool(descriptor_db=database)
    lines = {f"service {name}" for name in services}
    messages = {}

    def resolve(message) -> None:
        if message.full_name in messages:
            return
        messages[message.full_name] = [field.name for field in message.fields]
        for field in message.fields:
            if field.message_type is not None:
                resolve(field.message_type)

    for name in services:
        try:
            descriptor = pool.FindServiceByName(name)
        except KeyError as error:
            raise Failure(f"listed service {name} does not resolve: {error}") from None
        if not descriptor.methods:
            raise Failure(f"service {name} resolves with no methods")
        for method in descriptor.methods:
            lines.add(
                f"method {name}/{method.name}"
                f" input={method.input_type.full_name}"
                f" output={method.output_type.full_name}"
                f" client_streaming={str(method.client_streaming).lower()}"
                f" server_streaming={str(method.server_streaming).lower()}"
            )
            resolve(method.input_type)
            resolve(method.output_type)
    lines.update(f"message {name} {','.join(fields)}" for name, fields in messages.items())
    return lines


def _kind_then_name(line: str) -> tuple[int, str]:
    return (["service", "method", "message"].index(line.split(" ", 1)[0]), line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="HOST:PORT of the gRPC server")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    args = parser.parse_args()
    # Backstop: whatever hangs, the process ends.
    signal.alarm(int(args.timeout * 4) + 1)

    with grpc.insecure_channel(args.target) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=args.timeout)
        except grpc.FutureTimeoutError:
            raise Failure(f"cannot connect to {args.target} within {args.timeout}s") from None
        v1 = describe(channel, V1, args.timeout)
        if v1 is None:
            raise Failure(f"{V1} is unimplemented")
        v1alpha = describe(channel, V1ALPHA, args.timeout)
        if v1alpha is not None:
            differences = sorted(
                line for line in v1 ^ v1alpha if " grpc.reflection." not in line
            )
            if differences:
                raise Failure(
                    f"{V1ALPHA} and {V1} describe the server differently:\n"
                    + "\n".join(differences)
                )
    print(f"reflection {V1} served")
    print(f"reflection {V1ALPHA} {'unimplemented' if v1alpha is None else 'served'}")
    print("\n".join(sorted(v1 | (v1alpha or set()), key=_kind_then_name)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as error:
        print(f"reflection_client.py: {error}", file=sys.stderr)
    except grpc.RpcError as error:
        print(
            f"reflection_client.py: reflection call failed: {error.code()}: {error.details()}",
            file=sys.stderr,
        )
    except (KeyError, AssertionError) as error:
        # The stock client raises these for NOT_FOUND and other error responses.
        print(f"reflection_client.py: reflection lookup failed: {error!r}", file=sys.stderr)
    sys.exit(1)
