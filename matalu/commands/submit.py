"""`matalu submit SUBCOMMAND … --address http://HEAD:8265`."""

from __future__ import annotations


def run_argv(argv: list[str]) -> int:
    from matalu.submit import submit

    address, python, wait, rest = None, None, True, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--address", "--python") and i + 1 < len(argv):
            if a == "--address":
                address = argv[i + 1]
            else:
                python = argv[i + 1]
            i += 2
            continue
        if a.startswith("--address="):
            address = a.split("=", 1)[1]
        elif a.startswith("--python="):
            python = a.split("=", 1)[1]
        elif a == "--no-wait":
            wait = False
        elif a in ("-h", "--help") and not rest:
            print("usage: matalu submit SUBCOMMAND [ARGS…] --address http://HEAD:8265 [--python PATH] [--no-wait]\n\n"
                  "Runs `matalu SUBCOMMAND ARGS…` as a Ray job (Jobs API, working_dir = this repo), follows its\n"
                  "logs and exits with the job's status. Local paths in --out/--config/… are made absolute.")
            return 0
        else:
            rest.append(a)
        i += 1
    if not address:
        raise SystemExit("matalu submit: --address http://HEAD:8265 (the Ray dashboard / Jobs API address) is required")
    return submit(address, rest, python=python, wait=wait)
