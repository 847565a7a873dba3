def run() -> None:
    raise SystemExit(1)
