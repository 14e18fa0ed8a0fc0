#!/bin/bash
# The WAA emulator's entry.sh: takes the real entry.sh's flags (each with a value) and execs the
# emulator, so it becomes the container's PID 1 (with the fixture's `bash -c './entry.sh ...'`,
# bash execs this script) and receives docker's signals itself. The working directory stays /.
exec env PYTHONPATH=/usr/local/lib/waa-emulator python3 -m waa_emu "$@"
