"""The runtime.v1alpha2 API (old kubelets): crisp serves /runtime.v1alpha2.*
and relays to the backend; containerd 1.6 also serves it directly."""
import grpc
import pytest

from crilib import as_dict, rpc_error


@pytest.fixture
def alpha(cri):
    c = cri.with_version("v1alpha2")
    yield c
    c.close()


def test_v1alpha2_version(alpha):
    r = alpha.rt("Version", version="0.1.0")
    assert r.runtime_name == "containerd"
    assert r.version == "0.1.0"
    assert r.runtime_version
    assert r.runtime_api_version in ("v1alpha2", "v1")


def test_v1alpha2_status(alpha):
    r = alpha.rt("Status")
    assert {c.type: c.status for c in r.status.conditions} == {"RuntimeReady": True, "NetworkReady": True}


def test_v1alpha2_list_pod_sandbox(alpha, pods):
    pid, cfg = pods.run_pod(labels={"api": "v1alpha2"})  # made with v1
    pb = alpha.pb
    items = alpha.rt("ListPodSandbox", filter=pb.PodSandboxFilter(id=pid)).items
    assert [i.id for i in items] == [pid]
    assert items[0].metadata.name == cfg.metadata.name
    assert items[0].metadata.uid == cfg.metadata.uid
    assert items[0].state == pb.SANDBOX_READY
    assert items[0].labels["api"] == "v1alpha2"
    sel = alpha.rt("ListPodSandbox", filter=pb.PodSandboxFilter(
        label_selector={"api": "v1alpha2", "crisp-test/uid": cfg.labels["crisp-test/uid"]})).items
    assert [i.id for i in sel] == [pid]
    st = alpha.rt("PodSandboxStatus", pod_sandbox_id=pid).status
    assert st.id == pid and st.state == pb.SANDBOX_READY


def test_v1alpha2_images(alpha, cri, testenv):
    pb = alpha.pb
    ref = cri.img("PullImage", image=cri.pb.ImageSpec(image=testenv.BUSYBOX_IMAGE)).image_ref
    imgs = alpha.img("ListImages").images
    assert ref in [i.id for i in imgs]
    st = alpha.img("ImageStatus", image=pb.ImageSpec(image=testenv.BUSYBOX_IMAGE))
    assert st.image.id == ref
    assert testenv.BUSYBOX_IMAGE in st.image.repo_tags
    assert st.image.size > 0
    missing = alpha.img("ImageStatus", image=pb.ImageSpec(image=testenv.REGISTRY + "/crisp-test/nope:1"))
    assert not missing.HasField("image")


def test_v1alpha2_pull_image(alpha, testenv):
    r = alpha.img("PullImage", image=alpha.pb.ImageSpec(image=testenv.BUSYBOX_IMAGE))
    assert r.image_ref.startswith("sha256:")


def test_v1alpha2_error_relayed(alpha, direct_client):
    d = direct_client.with_version("v1alpha2")
    try:
        want = rpc_error(d.rt, "ContainerStatus", container_id="no-such-container-a2")
    finally:
        d.close()
    assert want[0] == grpc.StatusCode.NOT_FOUND
    assert rpc_error(alpha.rt, "ContainerStatus", container_id="no-such-container-a2") == want


def test_v1alpha2_same_answer(both, direct_pods, testenv):
    pid, _ = direct_pods.run_pod()
    d, c = (x.with_version("v1alpha2") for x in both)
    try:
        pb = d.pb
        f = pb.PodSandboxFilter(id=pid)
        assert as_dict(c.rt("ListPodSandbox", filter=f)) == as_dict(d.rt("ListPodSandbox", filter=f))
        spec = pb.ImageSpec(image=testenv.BUSYBOX_IMAGE)
        both.direct.img("PullImage", image=both.direct.pb.ImageSpec(image=testenv.BUSYBOX_IMAGE))
        assert as_dict(c.img("ImageStatus", image=spec)) == as_dict(d.img("ImageStatus", image=spec))
        assert sorted(i.id for i in c.img("ListImages").images) == sorted(i.id for i in d.img("ListImages").images)
        dv, cv = d.rt("Version"), c.rt("Version")
        assert (cv.runtime_name, cv.runtime_version, cv.version) == (dv.runtime_name, dv.runtime_version, dv.version)
    finally:
        d.close()
        c.close()



def test_v1alpha2_version_api_name(alpha):
    """A v1alpha2 Version names the API the client spoke: containerd says
    "v1alpha2"; crisp relays the call to its backend as v1 and rewrites the
    backend's "v1" so an old kubelet sees the same answer."""
    assert alpha.rt("Version").runtime_api_version == "v1alpha2"
