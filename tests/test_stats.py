"""`imdd-build stats`: counts, and a self-contained HTML report whose figures the card reuses."""

import base64
import io
import re

from PIL import Image

from imdd_build.sources.demo import generate_demo


def test_stats_json_and_self_contained_html(cli, tmp_path):
    cli("ingest", "demo", "--root", str(generate_demo(tmp_path / "demo")), "--workers", "1")
    cli("caption")
    stats = cli("stats")
    assert stats["images"] == 42 and stats["by_source"] == {"demo": 42}
    assert stats["by_label"] == {"normal": 24, "defective": 18} and stats["by_split"] == {"test": 24, "train": 18}
    assert stats["by_domain"] == {"ceramic_tile": 14, "metal_surface": 14, "textile": 14}
    assert stats["by_defect_type"]["stain"] == 6 and stats["caption_provenance"] == {"template/draft": 42}
    assert stats["verified"] == 0 and stats["caption_words"]["min"] >= 20
    assert "caption_word_counts" not in stats  # per-image lists stay out of --json

    report = tmp_path / "out" / "report.html"
    out = cli("stats", "--html", str(report))
    assert out["figures"] == sorted(["caption_length", "defect_types", "images_per_domain", "images_per_source",
                                     "label_balance", "mask_area", "verification", "samples_ceramic_tile",
                                     "samples_metal_surface", "samples_textile"])
    html = report.read_text()
    sources = re.findall(r"""src=['"]([^'"]+)""", html)
    assert len(sources) == 10 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in html and "https://" not in html and "<link" not in html  # nothing to fetch
    for s in sources:
        with Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))) as im:
            assert im.format == "PNG" and im.width >= 300
    assert cli("stats", "--sources", "nosuch", expect=2)["error"].startswith("no records")
