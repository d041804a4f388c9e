"""MIAD, Maintenance Inspection Anomaly Detection (Bao et al., ICCV Workshops 2023). License: sources.yaml.

MVTec-like layout (unverified against a real archive): `<category>/train/good/*`,
`<category>/test/<good|defect>/*`, masks `<category>/ground_truth/<defect>/<stem>_mask.png` (or
the same stem without suffix). Categories (unverified): catenary_dropper, electrical_insulator,
metal_welding, nut_and_bolt, photovoltaic_module, wind_turbine, witness_mark. Defect folder names
are data; the ones we know of are mapped in taxonomy.yaml. `good` (or `normal`) is normal. Masks
are binarised at half their maximum; a defect image without a mask keeps `attributes.mask =
"missing"`. Image extensions are matched case-insensitively.
"""

from __future__ import annotations

from ..sourcekit.mvtec_tree import MVTecTreeAdapter


class MIADAdapter(MVTecTreeAdapter):
    id = "miad"
    expected = "<category>/{train,test}/<class>/ images with ground_truth/<defect>/ masks"
    normal_names = frozenset({"good", "normal"})
