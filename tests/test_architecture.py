"""The shape of the code: layers that only look down, no cycles, no private names
crossing modules, files of one idea, a narrow and lazy public surface.

ARCHITECTURE.md draws the layers this test enforces.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "weightmaps"
CLI = ROOT / "cli"

# Lowest first: a module may import its own layer and those below, never above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("leaf", ("weightmaps._version", "weightmaps._shared")),
    ("kernels", ("weightmaps.kernels", "weightmaps.masktype")),
    (
        "recipe",
        (
            "weightmaps.kinds",
            "weightmaps.settings",
            "weightmaps.prepare",
            "weightmaps.recipe",
            "weightmaps.stats",
            "weightmaps.losses",
            "weightmaps.transforms",
            "weightmaps.preview",
            "weightmaps.preview_panels",
            "weightmaps.recompute",
            "weightmaps.warmup",
        ),
    ),
    ("files", ("weightmaps.io",)),
    ("pipeline", ("weightmaps.pipeline",)),
    (
        "shells",
        (
            "weightmaps.cli",
            "weightmaps.__main__",
            "weightmaps.data",
            "weightmaps.map_files",
            "weightmaps.monai",
            "weightmaps.napari",
        ),
    ),
]
# Thin re-exports kept for old import paths and the backend namespaces: above
# everything, and nothing inside the package imports them.
NAMESPACES = {
    "weightmaps",
    "weightmaps.unet",
    "weightmaps.edge",
    "weightmaps.balance",
    "weightmaps.instances",
    "weightmaps.maps",
    "weightmaps.torch_kernels",
    "weightmaps.chunked",
}
MAX_LINES = 700


def module_name(path: Path) -> str:
    if path.is_relative_to(CLI):
        parts = ["weightmaps", "cli", *path.relative_to(CLI).with_suffix("").parts]
    else:
        parts = ["weightmaps", *path.relative_to(PACKAGE).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    files = [*PACKAGE.rglob("*.py"), *CLI.rglob("*.py")]
    return {
        module_name(p): p for p in files if "__pycache__" not in p.parts and p.name != "conftest.py"
    }


MODULES = project_modules()


def imports(name: str) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import in ``name``, lazy ones too."""
    tree = ast.parse(MODULES[name].read_text())
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in MODULES:
                    found.append((sub, []))
                else:
                    found.append((base, [alias.name]))
    return [(m, names) for m, names in found if m in MODULES]


def layer_of(name: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{name} belongs to no layer: add it to LAYERS or NAMESPACES")


GRAPH = {name: sorted({m for m, _ in imports(name)}) for name in MODULES}


def test_every_module_has_a_layer():
    for name in MODULES:
        if name not in NAMESPACES:
            layer_of(name)


def test_layers_only_look_down():
    wrong = [
        f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for name, targets in GRAPH.items()
        if name not in NAMESPACES
        for target in targets
        if target not in NAMESPACES and layer_of(target) > layer_of(name)
    ]
    assert not wrong, "\n".join(wrong)


def test_nothing_inside_imports_the_namespaces():
    wrong = [
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if name not in NAMESPACES
        for target in targets
        if target in NAMESPACES
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    # Tarjan's strongly connected components over every import, lazy ones included.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in GRAPH:
        if node not in index:
            visit(node)
    assert not cycles, cycles


def test_no_private_name_crosses_modules():
    wrong = [
        f"{name} imports {', '.join(n for n in names if n.startswith('_'))} from {target}"
        for name in MODULES
        for target, names in imports(name)
        if target != name and any(n.startswith("_") and not n.startswith("__") for n in names)
    ]
    assert not wrong, "\n".join(wrong)


def test_no_module_is_over_700_lines():
    long = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


def test_import_weightmaps_loads_no_numba_torch_or_dask():
    code = (
        "import sys, weightmaps, weightmaps.cli.main; "
        "print(sorted(m for m in ('numba', 'torch', 'dask', 'skimage', 'scipy', 'monai', "
        "'napari', 'magicgui', 'npe2', 'albumentations', 'mkdocs') if m in sys.modules))"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "[]", ran.stdout


def test_names_load_on_first_use():
    code = (
        "import sys, weightmaps; weightmaps.MapSettings(); "
        "print('numba' in sys.modules, 'torch' in sys.modules); "
        "weightmaps.unet_weight_map; print('numba' in sys.modules)"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ran.stdout.split() == ["False", "False", "True"]


# --- the public surface, pinned: a rename is a decision, not an accident -------------

PUBLIC = {
    "weightmaps": [
        "BALANCE_MODES",
        "ClassCounts",
        "MapSettings",
        "MaskReadError",
        "__version__",
        "balance_weight_map",
        "border_cutoff",
        "check",
        "class_counts",
        "class_weights",
        "compute_maps",
        "edge_weight_map",
        "generate",
        "label_instances",
        "read_mask",
        "separate_instances",
        "signed_distance_map",
        "skeleton_map",
        "unet_weight_map",
    ],
    "weightmaps.torch_kernels": [
        "BYTES_PER_PIXEL",
        "VolumeTensorWarning",
        "balance_weight_map",
        "balance_weight_map_batch",
        "balance_weight_map_torch",
        "balance_weight_map_torch_batch",
        "class_counts_batch",
        "class_counts_torch_batch",
        "default_max_bytes",
        "edge_weight_map",
        "edge_weight_map_batch",
        "edge_weight_map_torch",
        "edge_weight_map_torch_batch",
        "estimate_bytes",
        "unet_weight_map",
        "unet_weight_map_batch",
        "unet_weight_map_torch",
        "unet_weight_map_torch_batch",
    ],
    "weightmaps.chunked": [
        "balance_weight_map",
        "class_counts",
        "edge_weight_map",
        "halo_depth",
        "label_instances",
        "separate_instances",
        "unet_weight_map",
    ],
    "weightmaps.losses": [
        "BOUNDARY_SCHEDULES",
        "DS_MODES",
        "REDUCTIONS",
        "BalancedBCEWithLogitsLoss",
        "BoundaryLoss",
        "ClDiceLoss",
        "DeepSupervisionLoss",
        "HausdorffDTLoss",
        "StructureLoss",
        "WeightedBCEWithLogitsLoss",
        "WeightedCrossEntropyLoss",
        "WeightedDiceCELoss",
        "balanced_bce_with_logits",
        "boundary_loss",
        "boundary_loss_weights",
        "cldice_loss",
        "deep_supervision_loss",
        "f3net_factors",
        "hausdorff_dt_loss",
        "soft_skeleton",
        "structure_loss",
        "weighted_bce_with_logits",
        "weighted_cross_entropy",
        "weighted_dice_ce",
    ],
    "weightmaps.io": [
        "DEFAULT_MAX_PIXELS",
        "MASK_SUFFIXES",
        "RGB_RULES",
        "MaskReadError",
        "read_mask",
        "read_spacing",
        "read_spacing_unit",
    ],
    "weightmaps.pipeline": [
        "EXIT_FAILED",
        "EXIT_INTERRUPTED",
        "EXIT_OK",
        "EXIT_RUN_ERROR",
        "EXIT_USAGE",
        "OUTPUT_KINDS",
        "CheckReport",
        "GenerateInterrupted",
        "GenerateReport",
        "MaskFile",
        "PipelineError",
        "check",
        "default_workers",
        "find_masks",
        "generate",
        "maps_of",
        "output_name",
        "printable",
        "resolve_device",
        "survey",
    ],
    "weightmaps.maps": [
        "BALANCE_SCOPES",
        "KINDS",
        "PARAM_KEYS",
        "MapSettings",
        "MaskMaps",
        "PreparedMask",
        "compute_maps",
        "compute_maps_batch",
        "compute_prepared",
        "mask_class_counts",
        "mask_instances",
        "prepare_mask",
    ],
    "weightmaps.data": ["IMAGE_SUFFIXES", "StaleMapsError", "WeightMapDataset"],
    "weightmaps.recompute": ["RecomputeMaps"],
    "weightmaps.transforms": [
        "Compose",
        "RandomCrop",
        "RandomElastic",
        "RandomFlip",
        "RandomRescale",
        "RandomRot90",
        "Resize",
    ],
    "weightmaps.kinds": [
        "DEFAULT_KINDS",
        "KINDS",
        "REGISTRY",
        "MapContext",
        "MapKind",
        "Param",
        "get_kind",
        "kind_names",
    ],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_are_pinned(module):
    if module in ("weightmaps.chunked",):
        pytest.importorskip("dask")
    imported = __import__(module, fromlist=["__all__"])
    assert sorted(imported.__all__) == sorted(PUBLIC[module])
    for name in imported.__all__:
        assert getattr(imported, name) is not None, name


def test_old_import_paths_keep_working():
    import weightmaps
    from weightmaps.balance import ClassCounts, class_weights  # noqa: F401
    from weightmaps.edge import edge_weight_map  # noqa: F401
    from weightmaps.instances import label_instances  # noqa: F401
    from weightmaps.maps import MapSettings, compute_maps  # noqa: F401
    from weightmaps.unet import border_cutoff, unet_weight_map  # noqa: F401

    assert weightmaps.unet_weight_map is unet_weight_map
    assert weightmaps.MapSettings is MapSettings


def test_every_registered_kind_is_complete():
    """What the recipes, the CLI and the manifest read of a kind is declared."""
    from weightmaps.kinds import REGISTRY
    from weightmaps.settings import PARAMS, MapSettings

    settings = MapSettings()
    for name, kind in REGISTRY.items():
        assert kind.name == name
        assert all(field in PARAMS for field in kind.uses), name
        assert all(p.name in PARAMS for p in kind.params), name
        assert callable(kind.compute)
        assert settings.kind_params(name)["kind"] == name
        if kind.halo is not None:
            assert len(kind.halo(settings, None, 3)) == 3


def test_every_package_is_shipped():
    tomllib = pytest.importorskip("tomllib")
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    packages = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert packages == listed
