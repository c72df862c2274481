"""The training wing: `run` (gan train's entry) -> `loop` -> `setup` -> `state` -> `pyramid` -> `step` -> `speed`
-> `tracking`, `augment`, `growth`; `launch` starts N local workers for a function it is given.
Nothing outside this package imports it but the command line's face (cli, arguments)."""
