"""``Project`` is the facade: ``project.build()``, ``project.publish()`` and the parts it hands
out (``project.segments``, ``project.models``) run the library end to end on a project on
disk, as the CLI and a notebook call them."""

from __future__ import annotations

import shutil
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta

import pytest

from segone.datasets import SAMPLE_FILES, generate_sample
from segone.datasets.sample import SAMPLE_TOML
from segone.exceptions import ProjectError, SegoneError
from segone.ingest import ingest_file
from segone.pipeline.build import ProjectBuild
from segone.project import Project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("facade")
    sample = root / "sample"
    generate_sample(sample, customers=150, seed=11)
    proj = Project.init(root / "proj")
    cfg = proj.root / "segone.toml"
    cfg.write_text(cfg.read_text().replace("churn = true", "churn = false") + SAMPLE_TOML)
    proj = Project.open(proj.root)
    with proj.warehouse() as wh:
        for kind, name in SAMPLE_FILES:
            ingest_file(wh, kind, sample / "data" / name, settings=proj.settings.ingest)
    shutil.rmtree(sample)
    return proj


@pytest.fixture(scope="module")
def built(project: Project) -> ProjectBuild:
    with pytest.raises(ProjectError, match="no online store"):
        project.publish(create_online=False)
    steps: list[str] = []

    def status(msg: str) -> AbstractContextManager[None]:
        steps.append(msg)
        return nullcontext()

    got = project.build(create_online=True, status=status)
    assert steps == [
        "picking up the server's events",
        "resolving identities and building profiles",
        "publishing to the online store",
    ]
    return got


def test_build_and_publish(project: Project, built: ProjectBuild) -> None:
    assert isinstance(built, ProjectBuild)
    result, online = built  # still unpacks as the (build, online) pair older callers take
    assert online is not None and online.published == result.profiles > 0
    assert project.publish().published == result.profiles


def test_segment_queries(project: Project, built: ProjectBuild) -> None:
    segs = project.segments
    assert segs is project.segments  # one part per project
    summary = segs.summary()
    assert {"segment", "members", "share"} <= set(summary.columns)
    biggest = summary.sort_values("members").iloc[-1]
    members = segs.members(str(biggest.segment))
    assert len(members) == int(biggest.members) and members == sorted(members)
    assert segs.members(str(biggest.segment), limit=2) == members[:2]
    with pytest.raises(SegoneError, match="no segment 'nope'"):
        segs.members("nope")
    audience = segs.export(str(biggest.segment))
    assert list(audience.customer_id) == members and "lifecycle_stage" in audience.columns
    one = project.root / "one.yaml"
    one.write_text("- name: preview_buyers_facade\n  rule: {revenue: {gt: 0}}\n", encoding="utf-8")
    seen = segs.preview(one)
    assert list(seen.segment) == ["preview_buyers_facade"] and int(seen.members.iloc[0]) > 0
    assert "preview_buyers_facade" not in set(segs.summary().segment)  # previewed, not added


def test_segment_history(project: Project, built: ProjectBuild) -> None:
    """A backfill over two past dates, then the matrix of lifecycle moves."""
    segs = project.segments
    end = built.build.as_of - timedelta(days=30)
    snaps = segs.backfill(end - timedelta(days=14), end, every_days=14)
    assert [s.at for s in snaps] == [end - timedelta(days=14), end]
    assert all(s.members > 0 for s in snaps)
    assert int(segs.transitions().moves.sum()) > 0
    with pytest.raises(SegoneError, match="go forward in time"):
        segs.snapshot(end - timedelta(days=1))


def test_model_fits(project: Project, built: ProjectBuild) -> None:
    fits = project.models.list()
    assert len(fits) > 0 and (fits.version >= 1).all()
    name = str(fits.name.iloc[0])
    latest = project.models.latest(name)
    assert latest is not None and latest.version == int(fits[fits.name == name].version.max())
    assert project.models.latest("no-such-model") is None
