"""The shared "search below the root" helper: breadth first, name order, hidden folders skipped."""

from imdd_build.sourcekit.search import search_below, shallowest


def _tree(root, *folders):
    for folder in folders:
        (root / folder).mkdir(parents=True)
    return root


def test_shallowest_match_wins_in_name_order(tmp_path):
    root = _tree(tmp_path, "b/data/hit", "a/x/y/data/hit", "c/data/hit", ".hidden/data/hit")
    has_data = lambda d: (d / "data").is_dir()  # noqa: E731
    assert search_below(root, has_data, depth=1) == (root / "b", True)
    assert [f.name for f, _ in shallowest(root, has_data, depth=1)] == ["b", "c"]
    assert search_below(root, has_data, depth=0) is None and shallowest(root, has_data, depth=0) == []
    assert search_below(root / "a", has_data, depth=1) is None
    assert search_below(root / "a", has_data, depth=2) == (root / "a/x/y", True)


def test_key_orders_each_level_and_probe_result_is_returned(tmp_path):
    root = _tree(tmp_path, "a/data", "z-special/data")
    probe = lambda d: sorted(c.name for c in d.iterdir()) if (d / "data").is_dir() else []  # noqa: E731
    assert search_below(root, probe, key=lambda p: (p.name != "z-special", p.name)) == (root / "z-special", ["data"])
    assert search_below(root, probe) == (root / "a", ["data"])
