"""ImageService against the engine: pulls (plain and htpasswd registries, every
AuthConfig form that basic auth allows), ListImages, ImageStatus, RemoveImage,
ImageFsInfo."""
import base64
import re

import grpc
import pytest

from conftest import code_of, engine_container_ids, v1

AUTH_WORDS = re.compile(r"auth|unauthori[sz]ed|credential|401|denied|password", re.I)
NOT_OK = (grpc.StatusCode.OK, grpc.StatusCode.UNIMPLEMENTED)


def spec(image):
    return v1.ImageSpec(image=image)


def image_status(cri, image):
    return cri.img("ImageStatus", image=spec(image)).image


def test_pull_plain_registry(cri, engine, denv):
    img = denv.VICTIM_IMAGE
    engine.remove_image(img, force=True)
    r = cri.img("PullImage", image=spec(img))
    assert r.image_ref, "PullImage answered no image_ref"
    eng = engine.image(img)
    assert eng is not None, "the engine does not have %s after PullImage" % img
    st = image_status(cri, img)
    assert st.id == eng["Id"], (st.id, eng["Id"])
    assert img in st.repo_tags, st
    assert st.repo_digests and all("@sha256:" in d for d in st.repo_digests), st
    assert st.size > 0, st
    # the returned reference finds the same image
    assert image_status(cri, r.image_ref).id == eng["Id"]
    assert image_status(cri, eng["Id"]).id == eng["Id"]


def _b64(s):
    return base64.b64encode(s.encode()).decode()


@pytest.mark.parametrize("form", ["username-password", "username-password-server", "auth"])
def test_pull_auth_registry(cri, engine, denv, form):
    img = denv.AUTH_VICTIM_IMAGE
    engine.remove_image(img, force=True)
    auth = {
        "username-password": v1.AuthConfig(username=denv.AUTH_USER, password=denv.AUTH_PASS),
        "username-password-server": v1.AuthConfig(username=denv.AUTH_USER, password=denv.AUTH_PASS,
                                                  server_address=denv.AUTH_REGISTRY),
        # base64("user:pass"): the engines do not take it as such (Docker answers
        # "no basic auth credentials"), crisp must decode it
        "auth": v1.AuthConfig(auth=_b64("%s:%s" % (denv.AUTH_USER, denv.AUTH_PASS))),
    }[form]
    r = cri.img("PullImage", image=spec(img), auth=auth)
    assert r.image_ref
    assert engine.image(img) is not None, "the engine does not have %s" % img
    assert image_status(cri, img).id
    engine.remove_image(img, force=True)


@pytest.mark.parametrize("form", ["wrong-password", "no-credentials", "wrong-auth"])
def test_pull_auth_registry_refused(cri, engine, denv, form):
    img = denv.AUTH_VICTIM_IMAGE
    engine.remove_image(img, force=True)
    before = engine_container_ids(engine)
    auth = {
        "wrong-password": v1.AuthConfig(username=denv.AUTH_USER, password="not-the-password"),
        "no-credentials": None,
        "wrong-auth": v1.AuthConfig(auth=_b64("%s:nope" % denv.AUTH_USER)),
    }[form]
    kw = {"auth": auth} if auth is not None else {}
    code, details = code_of(cri.img, "PullImage", image=spec(img), **kw)
    assert code not in NOT_OK and code != grpc.StatusCode.UNAVAILABLE, (code, details)
    assert AUTH_WORDS.search(details or ""), "the error does not say it is about auth: %r" % details
    assert engine.image(img) is None
    assert engine_container_ids(engine) == before


def test_pull_missing_image(cri, engine, denv):
    img = "%s/crisp-test/does-not-exist:1" % denv.REGISTRY
    before = engine_container_ids(engine)
    code, details = code_of(cri.img, "PullImage", image=spec(img))
    assert code not in NOT_OK and code != grpc.StatusCode.UNAVAILABLE, (code, details)
    if code != grpc.StatusCode.NOT_FOUND:
        assert re.search(r"not found|manifest unknown|does-not-exist|no such", details or "", re.I), \
            "neither NOT_FOUND nor a clear message: %s %r" % (code, details)
    assert engine.image(img) is None
    assert engine_container_ids(engine) == before


def test_list_images(cri, engine, denv):
    imgs = cri.img("ListImages").images
    eng = engine.image(denv.BUSYBOX_IMAGE)
    mine = [i for i in imgs if denv.BUSYBOX_IMAGE in i.repo_tags]
    assert len(mine) == 1, "busybox not listed once: %s" % [list(i.repo_tags) for i in imgs]
    assert mine[0].id == eng["Id"]
    assert mine[0].size > 0
    assert mine[0].repo_digests
    for i in imgs:
        assert i.id, i
    # filtered by image
    f = cri.img("ListImages", filter=v1.ImageFilter(image=spec(denv.BUSYBOX_IMAGE))).images
    assert [i.id for i in f if denv.BUSYBOX_IMAGE in i.repo_tags] == [eng["Id"]], f


def test_stream_images(cri, denv):
    seen = []
    for msg in cri.img_stream("StreamImages", v1.StreamImagesRequest(), deadline=20):
        seen.extend(msg.images)
    assert any(denv.BUSYBOX_IMAGE in i.repo_tags for i in seen), [list(i.repo_tags) for i in seen]


def test_image_status_unknown(cri, denv):
    img = "%s/crisp-test/never-pulled:1" % denv.REGISTRY
    try:
        r = cri.img("ImageStatus", image=spec(img))
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, (e.code(), e.details())
        return
    # CRI: "If the image is not present, returns a response with ImageStatusResponse.Image set to nil"
    assert not r.HasField("image"), r


def test_remove_image(cri, engine, denv):
    img = denv.VICTIM_IMAGE
    cri.img("PullImage", image=spec(img))
    assert engine.image(img) is not None
    cri.img("RemoveImage", image=spec(img))
    assert engine.image(img) is None, "the engine still has %s" % img
    assert not image_status(cri, img).id
    assert not [i for i in cri.img("ListImages").images if img in i.repo_tags]
    # idempotent (CRI: must not fail when already removed)
    try:
        cri.img("RemoveImage", image=spec(img))
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, (e.code(), e.details())


def test_remove_image_by_id(cri, engine, denv):
    img = denv.VICTIM_IMAGE
    cri.img("PullImage", image=spec(img))
    iid = engine.image(img)["Id"]
    cri.img("RemoveImage", image=spec(iid))
    assert engine.image(iid) is None


def test_image_fs_info(cri, engine):
    r = cri.img("ImageFsInfo")
    assert r.image_filesystems, r
    assert r.container_filesystems, r
    for fs in list(r.image_filesystems) + list(r.container_filesystems):
        assert fs.fs_id.mountpoint, fs
        assert fs.timestamp > 0, fs
    assert any(fs.used_bytes.value > 0 for fs in r.image_filesystems), \
        "images are present but image_filesystems used_bytes is 0: %s" % r
