"""Preset configs: ``quick.yaml`` (make run) and ``full.yaml`` (every embedded dataset)."""

# The full preset runs once per embedded dataset with these dataset settings on top of full.yaml.
FULL_DATASETS: dict[str, list[str]] = {
    "synth-cxr": ["dataset.name=synth-cxr", "dataset.attributes=[sex, age]"],
    "synth-derm": ["dataset.name=synth-derm", "dataset.attributes=[ruler]"],
    "synth-mri": ["dataset.name=synth-mri", "dataset.attributes=[sex, dataset]"],
}
