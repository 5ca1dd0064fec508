# One-command set-up: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint docs demo bench bench-gpu sample-data clean

# Where the torch wheel comes from. A plain `pip install torch` fetches the
# multi-GB CUDA build on Linux, so the CPU index is named explicitly; any other
# index works (`make install TORCH_INDEX=https://download.pytorch.org/whl/cu128`
# for CUDA 12.8), and `TORCH_INDEX=` (empty) leaves it to pip's own configuration
# (a mirror, a wheel folder). pip still looks in its configured find-links and
# extra indexes, so a machine that cannot reach the CPU index but has the wheel
# there installs it after a warning.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_VERSION ?= 2.13.0
TORCH_INDEX_FLAG = $(if $(strip $(TORCH_INDEX)),--index-url $(strip $(TORCH_INDEX)))

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch alone from TORCH_INDEX (above); if that index has no usable torch,
	# pip's configured indexes as a fallback (the build they give may be CUDA's).
	$(PY) -m pip install --no-deps $(TORCH_INDEX_FLAG) torch==$(TORCH_VERSION) \
		|| { echo "torch from $(TORCH_INDEX) failed; trying pip's configured indexes" >&2; \
		     $(PY) -m pip install --no-deps torch==$(TORCH_VERSION); }
	# Its dependencies (sympy, networkx ...) from pip's configured indexes; the
	# torch installed above satisfies the pin (2.13.0+cpu is a 2.13.0).
	$(PY) -m pip install torch==$(TORCH_VERSION)
	# integrations-test: MONAI (16 MB), albumentations (with OpenCV, 180 MB) and
	# npe2 (11 MB), so the integration tests run; docs: the site's builders.
	$(PY) -m pip install -e '.[dev,dask,integrations-test,docs]'
	# The CPU kernels compiled now (about 15 s on 2 cores) into numba's cache
	# beside the sources, rather than during the first mask of the first run.
	$(PY) -m weightmaps compile
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .

test: install lint docs
	$(PY) -m pytest -q

# The documentation site, warnings as errors: the gallery is made from
# sample_data/ first, the CLI and API pages from the code itself.
docs: install
	$(PY) scripts/make_gallery.py docs/gallery
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# One generate run per folder of sample_data: each kind of mask with the
# options it needs. Reruns skip what is current; `make demo` twice shows it.
WM := $(VENV)/bin/weightmaps
demo: install
	$(WM) generate sample_data/masks/nuclei out/demo/nuclei --separate-touching
	$(WM) generate sample_data/masks/binary out/demo/binary
	$(WM) generate sample_data/masks/semantic out/demo/semantic --mask-type semantic --ignore-value 255 --balance-mode median
	$(WM) generate sample_data/masks/volume out/demo/volume --spacing auto --sigma 2
	$(WM) check sample_data/masks/nuclei out/demo/nuclei
	$(WM) stats sample_data/masks/nuclei
	$(WM) preview sample_data/masks/nuclei/nuclei_00.tif --maps out/demo/nuclei --image sample_data/images/nuclei/nuclei_00.tif -o out/demo/preview/nuclei_00.png
	$(WM) preview sample_data/masks/binary/polyp_00.png --maps out/demo/binary --image sample_data/images/binary/polyp_00.png -o out/demo/preview/polyp_00.png
	$(WM) preview sample_data/masks/semantic/street_00.png --maps out/demo/semantic --image sample_data/images/semantic/street_00.png -o out/demo/preview/street_00.png
	$(WM) preview sample_data/masks/volume/nuclei3d_00.tif --maps out/demo/volume --image sample_data/images/volume/nuclei3d_00.tif -o out/demo/preview/nuclei3d_00.png

# Benchmark-only dependencies (seung-lab edt, the yardstick of bench_edt).
$(VENV)/.bench: $(STAMP)
	$(PY) -m pip install -e '.[dev,dask,bench]'
	touch $@

bench: install $(VENV)/.bench
	$(PY) benchmarks/bench_edt.py
	$(PY) benchmarks/bench_kernels.py
	$(PY) benchmarks/bench_generate.py
	$(PY) benchmarks/bench_write.py
	$(PY) benchmarks/bench_digests.py
	$(PY) benchmarks/bench_scale.py
	$(PY) benchmarks/bench_before.py
	$(PY) benchmarks/bench_new_kinds.py
	$(PY) benchmarks/bench_recompute.py

# GPU against the CPU path of the same machine (CPU-side figures only without CUDA).
bench-gpu: install
	$(PY) benchmarks/bench_gpu.py

sample-data: install
	$(PY) scripts/make_sample_data.py sample_data

clean:
	rm -rf $(VENV) out build docs/gallery *.egg-info .pytest_cache .ruff_cache
