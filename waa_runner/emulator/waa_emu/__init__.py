"""The WAA emulator (docs/emulator.md): behaves like the windowsarena/winarena container, port for
port and log line for log line, without Windows or QEMU. Standard library only; `python3 -m
waa_emu` is the container's PID 1. One module per concern, all state in one `state.State`."""
