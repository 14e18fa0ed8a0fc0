#!/bin/bash
# The emulator's entry.sh: takes the real entry.sh's flags and hands them to the emulator, which
# becomes PID 1's successor (exec) so signals reach it.
exec python3 /waa/waa_emulator.py "$@"
