"""Errors are relayed unchanged: same gRPC status code and the same details
string directly and through crisp."""
import grpc
import pytest

from crilib import rpc_error

CASES = [
    # (id, service, method, request fields, expected code)
    ("container-status-unknown", "RuntimeService", "ContainerStatus",
     dict(container_id="no-such-container"), grpc.StatusCode.NOT_FOUND),
    ("pod-status-unknown", "RuntimeService", "PodSandboxStatus",
     dict(pod_sandbox_id="no-such-pod"), grpc.StatusCode.NOT_FOUND),
    ("stop-container-unknown", "RuntimeService", "StopContainer",
     dict(container_id="no-such-container"), grpc.StatusCode.NOT_FOUND),
    ("exec-sync-unknown", "RuntimeService", "ExecSync",
     dict(container_id="no-such-container", cmd=["true"]), grpc.StatusCode.NOT_FOUND),
    ("stop-pod-unknown", "RuntimeService", "StopPodSandbox",
     dict(pod_sandbox_id="no-such-pod"), grpc.StatusCode.NOT_FOUND),
    ("container-stats-empty-id", "RuntimeService", "ContainerStats",
     dict(), grpc.StatusCode.UNKNOWN),
    ("run-pod-no-metadata", "RuntimeService", "RunPodSandbox",
     dict(), grpc.StatusCode.UNKNOWN),
    ("checkpoint-unimplemented", "RuntimeService", "CheckpointContainer",
     dict(container_id="x"), grpc.StatusCode.UNIMPLEMENTED),
    ("list-metric-descriptors", "RuntimeService", "ListMetricDescriptors",
     dict(), grpc.StatusCode.UNIMPLEMENTED),
    ("update-pod-resources", "RuntimeService", "UpdatePodSandboxResources",
     dict(pod_sandbox_id="x"), grpc.StatusCode.UNIMPLEMENTED),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_error_relayed(cri, direct_client, case):
    _, service, method, fields, code = case
    want = rpc_error(direct_client.call, service, method, **fields)
    assert want[0] == code, want
    got = rpc_error(cri.call, service, method, **fields)
    assert got == want


def test_pull_missing_image_error_relayed(cri, direct_client, testenv):
    spec = dict(image=direct_client.pb.ImageSpec(image=testenv.REGISTRY + "/crisp-test/nope:1"))
    want = rpc_error(direct_client.img, "PullImage", **spec)
    assert want[0] == grpc.StatusCode.NOT_FOUND
    assert rpc_error(cri.img, "PullImage", **spec) == want


def test_create_container_in_unknown_pod(cri, direct_client, testenv):
    pb = cri.pb
    req = pb.CreateContainerRequest(
        pod_sandbox_id="0" * 64,
        config=pb.ContainerConfig(metadata=pb.ContainerMetadata(name="x"),
                                  image=pb.ImageSpec(image=testenv.BUSYBOX_IMAGE)),
        sandbox_config=pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="x", uid="x", namespace="x")))
    want = rpc_error(direct_client.rt, "CreateContainer", req)
    assert want[0] in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNKNOWN)
    assert rpc_error(cri.rt, "CreateContainer", req) == want


@pytest.mark.parametrize("path", [
    "/runtime.v1.RuntimeService/NoSuchMethod",
    "/runtime.v1.ImageService/NoSuchMethod",
], ids=["unknown-method-runtime", "unknown-method-image"])
def test_unknown_method(cri, direct_client, path):
    """A method that is not in the schema: UNIMPLEMENTED. crisp answers it
    itself (it cannot know the message type), so only the code must match."""
    want = rpc_error(direct_client.raw, path, b"")
    assert want[0] == grpc.StatusCode.UNIMPLEMENTED
    assert rpc_error(cri.raw, path, b"")[0] == want[0]


def test_unknown_service(cri):
    """Not a CRI service at all: UNIMPLEMENTED (crisp may answer it itself,
    so only the code is compared)."""
    code, _ = rpc_error(cri.raw, "/runtime.v1.NoSuchService/Version", b"")
    assert code == grpc.StatusCode.UNIMPLEMENTED


def test_garbage_request_body(cri):
    """A body that is not a valid VersionRequest fails the call. containerd
    (grpc-go) says INTERNAL "grpc: error unmarshalling request: ..."; crisp
    decodes requests itself and may say INVALID_ARGUMENT instead."""
    garbage = b"\xff\xff\xff\xff"
    code, _ = rpc_error(cri.raw, "/runtime.v1.RuntimeService/Version", garbage)
    assert code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
    # and the connection is still good afterwards
    assert cri.rt("Version").runtime_name == "containerd"
