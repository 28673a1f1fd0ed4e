# Two commands do all the set-up on a fresh clone:
#   make study-imagenet-fractions   # the tiny grid, end to end (venv bootstrapped on first use)
#   make test                       # the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXECUTOR ?= local
SCALE ?= tiny
STUDY_ARGS ?=
SEEDS ?=
SEED_ARGS := $(if $(SEEDS),--seeds $(SEEDS),)

STUDIES := imagenet-fractions coco ade20k small-datasets small-datasets-mask75 long-schedule downstream
STUDY_TARGETS := $(addprefix study-,$(STUDIES))
.PHONY: venv test mmseg test-frameworks $(STUDY_TARGETS) tables figures report reports slurm-up slurm-down slurm-status test-slurm

$(STAMP): pyproject.toml requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip 2>/dev/null || true
	$(VENV)/bin/pip install -q -c requirements/lock.txt -e '.[test]'
	touch $@

venv: $(STAMP)

# a static pattern rule: phony targets never match plain pattern rules
$(STUDY_TARGETS): study-%: $(STAMP)
	$(PY) -m harness.cli run $* --scale $(SCALE) --executor $(EXECUTOR) $(SEED_ARGS) $(STUDY_ARGS)

test: $(STAMP)  # the frameworks tests have their own target (make mmseg first)
	$(PY) -m pytest -q -ra -m "not frameworks" $(PYTEST_ARGS)

# optional: mmengine + mmcv (ops built from source once, the wheel cached) + mmsegmentation, into the venv
mmseg: $(STAMP)
	bash requirements/install_mmseg.sh $(VENV)
# exported encoders loaded into mmsegmentation itself (docs/frameworks.md); skipped where make mmseg did not run
test-frameworks: $(STAMP)
	$(PY) -m pytest -q -ra -m frameworks $(PYTEST_ARGS)

STUDY ?= imagenet-fractions
tables: $(STAMP)
	$(PY) -m harness.cli report $(STUDY) --only tables
figures: $(STAMP)
	$(PY) -m harness.cli report $(STUDY) --only figures
report: $(STAMP)
	$(PY) -m harness.cli report $(STUDY)
PAPER_STUDIES := imagenet-fractions coco ade20k small-datasets small-datasets-mask75 long-schedule
reports: $(STAMP)  # every study's tables, figures, claims and report.html from stored results
	set -e; for s in $(PAPER_STUDIES); do $(PY) -m harness.cli report $$s; done

# the SLURM cluster of the tests (root, Debian 12; installs its packages on first use); NODES=2: two slurmds
# (n1, n2) on this machine, each with its own hostname, for the multi-node tests; CPUs are per node
SLURM_CI_CPUS ?= 4
NODES ?= 1
slurm-up:
	SLURM_CI_CPUS=$(SLURM_CI_CPUS) SLURM_CI_NODES=$(NODES) bash .ci/slurm.sh up
slurm-down:
	SLURM_CI_NODES=$(NODES) bash .ci/slurm.sh down
slurm-status:
	SLURM_CI_NODES=$(NODES) bash .ci/slurm.sh status
test-slurm: $(STAMP)
	$(PY) -m pytest -q -ra -m slurm $(PYTEST_ARGS)
