#!/usr/bin/env python3
"""Checks that each published crate's declared `rust-version` is true for what it depends on.

CI reaches only the package registries, so an older toolchain cannot be downloaded to prove the
MSRV by building. Instead: every crate that a published crate pulls in (normal and build
dependencies, transitively, as `Cargo.lock` resolves them with the features named below) declares
its own `rust-version`; ours must be at least the highest of them. clippy's `incompatible_msrv`
lint (on by default, `-D warnings` in CI) guards our own use of std against the same number.

With --declared, a crate is checked against that version instead of its own `rust-version`: for a
feature whose MSRV is higher than the crate's and documented (the `lint` feature needs squawk's).

Usage: python3 .ci/msrv.py [--features F,...] [--only CRATE,...] [--declared VERSION]
"""
import argparse
import json
import subprocess
import sys


def parse(version):
    return tuple(int(part) for part in version.split("."))


def show(version):
    return ".".join(str(part) for part in version)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", default="", help="features to resolve with (cargo syntax)")
    parser.add_argument("--only", default="", help="published crates to check (default: all)")
    parser.add_argument("--declared", default="", help="the MSRV to check against (default: each crate's)")
    args = parser.parse_args()

    command = ["cargo", "metadata", "--format-version", "1", "--locked"]
    if args.features:
        command += ["--features", args.features]
    metadata = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    packages = {package["id"]: package for package in metadata["packages"]}
    nodes = {node["id"]: node for node in metadata["resolve"]["nodes"]}
    members = set(metadata["workspace_members"])

    def published(package):
        # `publish = false` appears as an empty list of registries.
        return package["publish"] != []

    only = set(filter(None, args.only.split(",")))
    failures = []
    for member in sorted(members, key=lambda id: packages[id]["name"]):
        package = packages[member]
        if not published(package) or (only and package["name"] not in only):
            continue
        declared = args.declared or package.get("rust_version")
        if not declared:
            failures.append(f"{package['name']}: no rust-version declared")
            continue
        # Walk normal and build dependencies; dev-dependencies do not reach a user.
        highest, why = (0,), None
        seen, stack = {member}, [member]
        while stack:
            for dep in nodes[stack.pop()]["deps"]:
                if not any(kind["kind"] in (None, "build") for kind in dep["dep_kinds"]):
                    continue
                if dep["pkg"] in seen:
                    continue
                seen.add(dep["pkg"])
                stack.append(dep["pkg"])
                # Our own crates are checked on their own; name the outside crate that needs it.
                needed = None if dep["pkg"] in members else packages[dep["pkg"]].get("rust_version")
                if needed and parse(needed) > highest:
                    highest, why = parse(needed), packages[dep["pkg"]]
        line = f"{package['name']}: declares {declared}, dependencies need {show(highest)}"
        if why:
            line += f" ({why['name']} {why['version']})"
        print(line)
        if parse(declared) < highest:
            failures.append(
                f"{package['name']} declares rust-version {declared}, but {why['name']} "
                f"{why['version']} needs {show(highest)}: raise rust-version (or pin the dependency lower)"
            )
    if failures:
        for failure in failures:
            print(f"error: {failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
