"""OCI 1.1 fields of the indexes manyfest builds: index annotations (`create --annotation`,
plan `annotations`), `artifactType`, `subject`, labels copied into annotations; the list
settings `create` keeps for `push` (a sidecar file outside docker's list directories).

Against the real registry with real-size images; expected bytes are built independently
(`encode_list`, or literal bytes for the key order) and every digest is asserted.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import anyio
import pytest

from manyfest import mediatypes, reference
from manyfest.api import Session
from manyfest.cache import FactCache
from manyfest.content import Entry, Manifest, encode_list
from manyfest.engine import PublishOptions
from manyfest.errors import PlanError
from manyfest.models import SubjectDescriptor
from manyfest.ops import plan as plans
from manyfest.platform import Platform
from manyfest.reference import filesafe
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests.helpers import PLATFORMS, manyfest, seed_built
from tests.imagewriter import Image, build_attested_index, push_attested_index
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

AMD64, ARM64 = PLATFORMS[0], PLATFORMS[2]
OCI_PREFIX = "org.opencontainers.image."
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


# ------------------------------------------------------------------ encode_list, unit


def test_encode_list_writes_image_index_keys_in_spec_order() -> None:
    entry = Entry(mediatypes.OCI_MANIFEST, 9, D1, Platform("linux", "amd64"))
    subject = SubjectDescriptor(media_type=mediatypes.OCI_MANIFEST, digest=D2, size=42)
    m = encode_list([entry], annotations={"b": "1", "a": "x&y"}, style="compact",
                    artifact_type="application/vnd.example.sbom+json", subject=subject)
    assert m.media_type == mediatypes.OCI_INDEX
    assert m.raw == (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",'
        b'"artifactType":"application/vnd.example.sbom+json","manifests":[{"mediaType":'
        b'"application/vnd.oci.image.manifest.v1+json","size":9,"digest":"' + D1.encode()
        + b'","platform":{"architecture":"amd64","os":"linux"}}],"subject":{"mediaType":'
        b'"application/vnd.oci.image.manifest.v1+json","digest":"' + D2.encode()
        + b'","size":42},"annotations":{"b":"1","a":"x\\u0026y"}}'
    )
    docker_style = encode_list([entry], subject=subject, artifact_type="application/x.y")
    assert docker_style.raw == (
        b'{\n   "schemaVersion": 2,\n   "mediaType": "application/vnd.oci.image.index.v1+json",'
        b'\n   "artifactType": "application/x.y",\n   "manifests": [\n      {\n'
        b'         "mediaType": "application/vnd.oci.image.manifest.v1+json",\n'
        b'         "size": 9,\n         "digest": "' + D1.encode() + b'",\n'
        b'         "platform": {\n            "architecture": "amd64",\n'
        b'            "os": "linux"\n         }\n      }\n   ],\n   "subject": {\n'
        b'      "mediaType": "application/vnd.oci.image.manifest.v1+json",\n'
        b'      "digest": "' + D2.encode() + b'",\n      "size": 42\n   }\n}'
    )
    decoded = docker_style.index()
    assert decoded.artifact_type == "application/x.y"
    assert decoded.subject is not None
    assert decoded.subject.digest == D2


@pytest.mark.parametrize(
    ("kwargs", "fields"),
    [
        ({"artifact_type": "application/x.y"}, "artifactType"),
        ({"subject": SubjectDescriptor(media_type=mediatypes.OCI_MANIFEST, digest=D2, size=1)},
         "subject"),
        ({"annotations": {"a": "b"}, "artifact_type": "application/x.y"},
         "annotations, artifactType"),
    ],
)
def test_encode_list_refuses_oci_fields_on_a_docker_list(kwargs: dict[str, object],
                                                         fields: str) -> None:
    entry = Entry(mediatypes.DOCKER_MANIFEST, 9, D1, Platform("linux", "amd64"))
    with pytest.raises(ValueError, match=f"^a Docker manifest list has no {fields}$"):
        encode_list([entry], **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ plan keys, unit


def test_plan_keys_parse() -> None:
    [a, b] = plans.parse_documents(
        "image: a.io/x:1\nmedia_type: oci\nartifact_type: application/vnd.x+json\n"
        "subject: '@" + D1 + "'\nlabels_to_annotations: 'True'\n"
        "manifests: [{image: a.io/y:1}]\n---\n"
        "matrix: {v: ['2']}\nimage: 'a.io/x:{v}'\nplatforms: [linux/amd64]\n"
        "template: 'a.io/x-{arch}:{v}'\nsubject: ':base-{v}'\nartifact_type: 'application/x.{v}'\n"
    )
    assert (a.media_type, a.artifact_type, a.subject, a.labels_to_annotations) == (
        "oci", "application/vnd.x+json", "@" + D1, True
    )
    assert (b.media_type, b.artifact_type, b.subject, b.labels_to_annotations) == (
        "", "application/x.2", ":base-2", False
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("media_type: OCI\n", "plan: document 1: media_type: 'OCI' is not auto, oci or docker"),
        ("labels_to_annotations: yes\n",
         "plan: document 1: labels_to_annotations: expected true or false, got 'yes'"),
        ("artifact_type: sbom\n", "plan: document 1: artifact_type: 'sbom' is not a media type"),
        ("subject: 'a.io/x:bad tag'\n", "plan: document 1: subject: "),
        ("media_type: docker\nartifact_type: application/x.y\nlabels_to_annotations: true\n",
         "plan: document 1: artifact_type, labels_to_annotations given for a Docker manifest "
         "list (media_type: docker), which has none of them"),
    ],
)
def test_plan_keys_refused(extra: str, message: str) -> None:
    with pytest.raises(PlanError) as err:
        plans.parse_documents("image: a.io/x:1\nmanifests: [{image: a.io/y:1}]\n" + extra)
    assert err.value.message.startswith(message), err.value.message
    assert err.value.exit_code == 2


# ------------------------------------------------------------------ against the registry


def _store() -> Path:
    return Path(os.environ["DOCKER_CONFIG"]) / "manifests"


def _seed(host: str, ns: str, *, oci: bool = True, repo: str = "app") -> dict[str, Image]:
    names = [(f"{ns}/{repo}-amd64:1", AMD64, ns), (f"{ns}/{repo}-arm64:1", ARM64, ns)]
    return {f"{host}/{n}": image for n, image in seed_built(host, names, oci=oci).items()}


def _entries(images: dict[str, Image], *, store_order: bool = True) -> list[Entry]:
    refs = sorted(images, key=lambda r: filesafe(reference.parse(r))) if store_order else list(
        images)
    out = []
    for ref in refs:
        m = images[ref].manifest
        out.append(Entry(m.media_type, m.size, m.digest, AMD64 if "amd64" in ref else ARM64))
    return out


def _get(ref: str) -> Manifest:
    async def run() -> Manifest:
        async with Transport(Settings()) as transport:
            return await RegistryClient(transport).get_manifest(reference.parse(ref))

    return anyio.run(run)


def _labels(image: Image) -> dict[str, str]:
    labels = json.loads(image.config)["config"]["Labels"]
    return {k: v for k, v in labels.items() if k.startswith(OCI_PREFIX)}


def _common(images: list[Image]) -> dict[str, str]:
    first, *rest = (_labels(i) for i in images)
    return dict(sorted((k, v) for k, v in first.items() if all(o.get(k) == v for o in rest)))


def test_create_annotations_artifact_type_subject_survive_until_push(
    registry: RegistryServer, ns: str
) -> None:
    host = registry.host
    images = _seed(host, ns)
    base = seed_built(host, [(f"{ns}/app:base", AMD64, ns + "base")], oci=True)
    base_manifest = base[f"{ns}/app:base"].manifest
    target = f"{host}/{ns}/app:1"
    created = manyfest(
        "create", target, *images, "--annotation", "org.opencontainers.image.version=1.0",
        "--annotation", "com.example.url=https://x/?a=1&b=2", "--artifact-type",
        "application/vnd.example.release+json", "--subject", ":base",
    )
    assert (created.returncode, created.stderr) == (0, ""), created.stderr
    sidecar = _store() / ".manyfest" / f"{filesafe(reference.parse(target))}.json"
    kept = json.loads(sidecar.read_text())
    # the subject is pinned by digest at create
    assert kept["subject"] == f"{host}/{ns}/app@{base_manifest.digest}"
    list_dir = _store() / filesafe(reference.parse(target))
    assert all(p.name.startswith(f"127.0.0.1-{registry.port}_") for p in list_dir.iterdir())

    # the subject tag moves after create: push still uses the manifest create resolved
    seed_built(host, [(f"{ns}/app:base", AMD64, ns + "other")], oci=True)
    pushed = manyfest("push", target)
    assert (pushed.returncode, pushed.stderr) == (0, ""), pushed.stderr
    expected = encode_list(
        _entries(images),
        annotations={"org.opencontainers.image.version": "1.0",
                     "com.example.url": "https://x/?a=1&b=2"},
        artifact_type="application/vnd.example.release+json",
        subject=SubjectDescriptor(media_type=mediatypes.OCI_MANIFEST,
                                  digest=base_manifest.digest, size=base_manifest.size),
    )
    assert pushed.stdout.splitlines()[-1] == expected.digest
    got = _get(target)
    assert got.raw == expected.raw
    assert list(json.loads(got.raw)) == [
        "schemaVersion", "mediaType", "artifactType", "manifests", "subject", "annotations"
    ]

    # push flags override create's: another artifactType, one annotation changed
    again = manyfest("push", target, "--artifact-type", "application/x.other",
                     "--annotation", "org.opencontainers.image.version=2.0")
    assert again.returncode == 0, again.stderr
    doc = json.loads(_get(target).raw)
    assert doc["artifactType"] == "application/x.other"
    assert doc["annotations"] == {"org.opencontainers.image.version": "2.0",
                                  "com.example.url": "https://x/?a=1&b=2"}
    # the stored settings are not changed by push's flags
    assert json.loads(sidecar.read_text())["artifact_type"] == (
        "application/vnd.example.release+json"
    )

    # rm removes the settings with the list
    removed = manyfest("rm", target)
    assert removed.returncode == 0, removed.stderr
    assert not sidecar.exists()
    assert not list_dir.exists()


def test_subject_must_be_in_the_target_repository(registry: RegistryServer, ns: str) -> None:
    host = registry.host
    images = _seed(host, ns)
    other = seed_built(host, [(f"{ns}/other:1", AMD64, ns + "o")], oci=True)
    other_digest = other[f"{ns}/other:1"].manifest.digest
    target = f"{host}/{ns}/app:1"
    elsewhere = manyfest("create", target, *images, "--subject", f"{host}/{ns}/other:1")
    assert elsewhere.returncode == 2
    assert elsewhere.stderr == (
        f"subject {host}/{ns}/other:1 is not in {host}/{ns}/app: the subject of {target} must "
        f"be in its repository (referrers are listed per repository); copy it into "
        f"{host}/{ns}/app first, or name it there\n"
    )
    missing = manyfest("create", target, *images, "--subject", "@" + other_digest)
    assert missing.returncode == 1
    assert missing.stderr == (
        f"{target}: no such subject {host}/{ns}/app@{other_digest}: registry answered 404; "
        f"push the subject to {host}/{ns}/app first, or check --subject (plan key subject)\n"
    )
    docker_list = manyfest("create", target, *_seed(host, ns, oci=False, repo="d"),
                           "--artifact-type", "application/x.y")
    assert docker_list.returncode == 2
    assert docker_list.stderr.startswith(
        f"{target}: index artifactType asked for a Docker manifest list (its first entry is a "
        "Docker image), which has none; pass --media-type oci"
    )
    assert not (_store() / filesafe(reference.parse(target))).exists()


def test_stale_settings_of_a_list_docker_recreated_are_ignored(registry: RegistryServer,
                                                             ns: str) -> None:
    host = registry.host
    images = _seed(host, ns)
    target = f"{host}/{ns}/app:1"
    ok = manyfest("create", target, *images, "--annotation", "a=b")
    assert ok.returncode == 0, ok.stderr
    list_dir = _store() / filesafe(reference.parse(target))
    sidecar = _store() / ".manyfest" / f"{filesafe(reference.parse(target))}.json"
    assert sidecar.exists()
    # as `docker manifest rm` then `docker manifest create` do: a new directory (the old one
    # is kept until the new one exists, so the new one cannot reuse its inode)
    old = list_dir.with_name("old-list")
    list_dir.rename(old)
    list_dir.mkdir()
    for entry in old.iterdir():
        shutil.copy(entry, list_dir / entry.name)
    shutil.rmtree(old)
    pushed = manyfest("push", target)
    assert pushed.returncode == 0, pushed.stderr
    plain = encode_list(_entries(images))
    assert pushed.stdout.splitlines()[-1] == plain.digest  # no annotations leaked in
    assert _get(target).raw == plain.raw

    # docker rm alone leaves the settings file; manyfest's next create replaces it
    shutil.rmtree(list_dir)
    again = manyfest("create", target, *images)
    assert again.returncode == 0, again.stderr
    assert not sidecar.exists()


def test_labels_to_annotations_on_create(registry: RegistryServer, ns: str) -> None:
    host = registry.host
    images = _seed(host, ns)
    target = f"{host}/{ns}/app:1"
    created = manyfest("create", "--labels-to-annotations", "--annotation",
                       "org.opencontainers.image.title=given", target, *images)
    assert created.returncode == 0, created.stderr
    pushed = manyfest("push", target)
    assert pushed.returncode == 0, pushed.stderr
    common = _common(list(images.values()))
    # the same seed: one revision; the description names the platform: never copied
    assert f"{OCI_PREFIX}revision" in common
    assert f"{OCI_PREFIX}description" not in common
    expected = encode_list(
        _entries(images), annotations={**common, f"{OCI_PREFIX}title": "given"}
    )
    assert pushed.stdout.splitlines()[-1] == expected.digest
    assert _get(target).raw == expected.raw


def test_labels_to_annotations_with_index_sources_skip_attestations(
    registry: RegistryServer, ns: str, tmp_path: Path
) -> None:
    host = registry.host
    items = {p.architecture: build_attested_index(p, ns) for p in (AMD64, ARM64)}

    async def push() -> None:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            for arch, item in items.items():
                await push_attested_index(client, reference.parse(f"{host}/{ns}/src-{arch}:1"),
                                          item)

    anyio.run(push)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"image: {host}/{ns}/app:1\nlabels_to_annotations: true\n"
        f"annotations: {{{OCI_PREFIX}version: '9'}}\nmanifests:\n"
        f"  - image: {host}/{ns}/src-amd64:1\n  - image: {host}/{ns}/src-arm64:1\n"
    )
    proc = manyfest("publish", "--json", str(plan))
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    doc = json.loads(_get(f"{host}/{ns}/app:1").raw)
    assert result["digest"] == _get(f"{host}/{ns}/app:1").digest
    common = _common([items["amd64"].image, items["arm64"].image])
    assert common  # the attestations (no labels) did not empty it
    assert doc["annotations"] == {**common, f"{OCI_PREFIX}version": "9"}
    assert [m["digest"] for m in doc["manifests"]] == [
        items["amd64"].image.manifest.digest, items["arm64"].image.manifest.digest,
        items["amd64"].attestation.manifest.digest, items["arm64"].attestation.manifest.digest,
    ]
    # an index source's children got their platform from the index: their configs are read
    # only when labels are copied (one GET per image config; attestations' never)
    sources = plans.parse_documents(
        f"image: {host}/{ns}/dry:1\nmanifests:\n"
        f"  - image: {host}/{ns}/src-amd64:1\n  - image: {host}/{ns}/src-arm64:1\n"
    )
    without, _ = _dry_run_requests(host, sources, False)
    with_labels, _ = _dry_run_requests(host, sources, True)
    assert with_labels == without + 2
    # --no-labels-to-annotations overrides the plan
    off = manyfest("publish", "--no-labels-to-annotations", "--json", str(plan))
    assert off.returncode == 0, off.stderr
    assert json.loads(_get(f"{host}/{ns}/app:1").raw)["annotations"] == {
        f"{OCI_PREFIX}version": "9"
    }


def _dry_run_requests(host: str, plan: list[plans.PlanList], labels: bool) -> tuple[int, str]:
    async def run() -> tuple[int, str]:
        async with Session(Settings(), cache=FactCache(enabled=False)) as session:
            report = await session.publish(
                plan, options=PublishOptions(dry_run=True, labels_to_annotations=labels)
            )
            [result] = report.results
            assert result.status == "created", result.error
            return report.requests, result.digest

    return anyio.run(run)


def test_labels_cost_no_request_for_image_sources(registry: RegistryServer, ns: str) -> None:
    """The config blob read for an image's platform gives its labels too."""
    host = registry.host
    images = _seed(host, ns)
    text = f"image: {host}/{ns}/app:1\nmanifests:\n" + "".join(
        f"  - image: {r}\n" for r in images
    )
    plan = plans.parse_documents(text)
    without, plain = _dry_run_requests(host, plan, False)
    with_labels, labelled = _dry_run_requests(host, plan, True)
    assert with_labels == without
    assert plain == encode_list(_entries(images, store_order=False)).digest
    assert labelled == encode_list(
        _entries(images, store_order=False), annotations=_common(list(images.values()))
    ).digest


def test_publish_artifact_type_and_subject_flags(registry: RegistryServer, ns: str,
                                                 tmp_path: Path) -> None:
    host = registry.host
    images = _seed(host, ns)
    base = seed_built(host, [(f"{ns}/app:base", AMD64, ns + "base")], oci=True)
    base_manifest = base[f"{ns}/app:base"].manifest
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"image: {host}/{ns}/app:1\nartifact_type: application/x.plan\nsubject: ':nope'\n"
        "manifests:\n" + "".join(f"  - image: {r}\n" for r in images)
    )
    proc = manyfest("publish", "--json", "--artifact-type", "application/x.flag",
                    "--subject", f"{host}/{ns}/app:base", str(plan))
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    expected = encode_list(
        _entries(images, store_order=False), artifact_type="application/x.flag",
        subject=SubjectDescriptor(media_type=base_manifest.media_type,
                                  digest=base_manifest.digest, size=base_manifest.size),
    )
    assert result["digest"] == expected.digest
    assert _get(f"{host}/{ns}/app:1").raw == expected.raw
    # without the flag, the plan's own subject (a tag that does not exist): the list fails
    # and its tag stays where it was
    alone = manyfest("publish", "--json", str(plan))
    assert alone.returncode == 3
    [failed] = json.loads(alone.stdout)["results"]
    assert failed["status"] == "failed"
    assert failed["error"] == (
        f"{host}/{ns}/app:1: no such subject {host}/{ns}/app:nope: registry answered 404; "
        f"push the subject to {host}/{ns}/app first, or check --subject (plan key subject)"
    )
    assert _get(f"{host}/{ns}/app:1").digest == expected.digest


def test_create_amend_merges_settings(registry: RegistryServer, ns: str) -> None:
    host = registry.host
    images = _seed(host, ns)
    amd64, arm64 = sorted(images)
    target = f"{host}/{ns}/app:1"
    first = manyfest("create", target, amd64, "--annotation", "a=1", "--annotation", "b=1",
                     "--artifact-type", "application/x.first")
    assert (first.returncode, first.stderr) == (0, ""), first.stderr
    # --amend adds an entry; its settings go over the list's (annotations key by key)
    amended = manyfest("create", "--amend", target, arm64, "--annotation", "b=2")
    assert (amended.returncode, amended.stderr) == (0, ""), amended.stderr
    pushed = manyfest("push", target)
    assert pushed.returncode == 0, pushed.stderr
    expected = encode_list(_entries(images), annotations={"a": "1", "b": "2"},
                           artifact_type="application/x.first")
    assert pushed.stdout.splitlines()[-1] == expected.digest
    assert _get(target).raw == expected.raw
    # a create refused for lack of --amend makes no request and changes nothing
    before = registry.request_count()
    refused = manyfest("create", target, amd64, "--subject", ":base")
    assert refused.returncode == 1
    assert refused.stderr.startswith("refusing to amend an existing manifest list")
    assert registry.request_count() == before
