"""ImageService: PullImage, ListImages, ImageStatus, RemoveImage, ImageFsInfo."""
import grpc
import pytest

from crilib import as_dict, rpc_error


def spec(cri, ref):
    return cri.pb.ImageSpec(image=ref)


@pytest.fixture
def busybox(cri, testenv):
    r = cri.img("PullImage", image=spec(cri, testenv.BUSYBOX_IMAGE))
    return r.image_ref


def test_pull_image(cri, testenv):
    r = cri.img("PullImage", image=spec(cri, testenv.BUSYBOX_IMAGE))
    assert r.image_ref.startswith("sha256:")


def test_pull_image_with_sandbox_config(cri, testenv):
    # the kubelet passes the pod's config along; it must not change anything
    cfg = cri.pb.PodSandboxConfig(metadata=cri.pb.PodSandboxMetadata(name="pull", uid="u", namespace="crisp-test"))
    r = cri.img("PullImage", image=spec(cri, testenv.BUSYBOX_IMAGE), sandbox_config=cfg)
    assert r.image_ref.startswith("sha256:")


def test_pull_missing_image(cri, testenv):
    ref = testenv.REGISTRY + "/crisp-test/does-not-exist:1"
    code, details = rpc_error(cri.img, "PullImage", image=spec(cri, ref))
    assert code == grpc.StatusCode.NOT_FOUND
    assert ref in details


def test_list_images(cri, testenv, busybox):
    r = cri.img("ListImages")
    by_id = {i.id: i for i in r.images}
    assert busybox in by_id
    img = by_id[busybox]
    assert testenv.BUSYBOX_IMAGE in img.repo_tags
    assert any(d.startswith(testenv.REGISTRY + "/crisp-test/busybox@sha256:") for d in img.repo_digests)
    assert img.size > 0


def test_list_images_filter(cri, testenv, busybox, direct_client):
    # containerd 1.6 ignores ListImages' filter (it lists everything); crisp
    # must pass the filter on and relay whatever the backend answers
    f = cri.pb.ImageFilter(image=spec(cri, testenv.BUSYBOX_IMAGE))
    r = cri.img("ListImages", filter=f)
    assert busybox in [i.id for i in r.images]
    assert sorted(i.id for i in r.images) == sorted(i.id for i in direct_client.img("ListImages", filter=f).images)


def test_image_status(cri, testenv, busybox):
    r = cri.img("ImageStatus", image=spec(cri, testenv.BUSYBOX_IMAGE))
    assert r.image.id == busybox
    assert testenv.BUSYBOX_IMAGE in r.image.repo_tags
    assert not r.info
    rv = cri.img("ImageStatus", image=spec(cri, testenv.BUSYBOX_IMAGE), verbose=True)
    assert rv.image == r.image
    assert "info" in rv.info and '"crisp-test":"busybox"' in rv.info["info"].replace(" ", "")


def test_image_status_unknown(cri, testenv):
    r = cri.img("ImageStatus", image=spec(cri, testenv.REGISTRY + "/crisp-test/does-not-exist:1"))
    assert not r.HasField("image")
    assert r.ByteSize() == 0


def test_remove_image(cri, testenv):
    ref = testenv.VICTIM_IMAGE
    pulled = cri.img("PullImage", image=spec(cri, ref)).image_ref
    assert cri.img("ImageStatus", image=spec(cri, ref)).image.id == pulled
    cri.img("RemoveImage", image=spec(cri, ref))
    assert not cri.img("ImageStatus", image=spec(cri, ref)).HasField("image")
    assert pulled not in {i.id for i in cri.img("ListImages").images}
    # removing what is not there is not an error
    cri.img("RemoveImage", image=spec(cri, ref))


def test_image_fs_info(cri, testenv):
    r = cri.img("ImageFsInfo")
    assert len(r.image_filesystems) >= 1
    fs = r.image_filesystems[0]
    assert fs.fs_id.mountpoint.endswith("io.containerd.snapshotter.v1.overlayfs")
    assert fs.timestamp > 0


def test_images_same_answer(both, testenv):
    for c in both:
        c.img("PullImage", image=spec(c, testenv.BUSYBOX_IMAGE))
    d, c = (x.img("ListImages") for x in both)
    assert sorted(as_dict(d)["images"], key=lambda i: i["id"]) == \
        sorted(as_dict(c)["images"], key=lambda i: i["id"])
    d, c = (x.img("ImageStatus", image=spec(x, testenv.BUSYBOX_IMAGE), verbose=True) for x in both)
    assert c == d
    d, c = (x.img("ImageFsInfo") for x in both)
    assert as_dict(c) == as_dict(d)
