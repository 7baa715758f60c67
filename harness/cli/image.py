"""`harness image build` and `harness image push <registry>`.

``add_image_commands(subparsers)`` registers them on the `harness` parser; each parsed
namespace carries ``image_handler(ns) -> int``. ``python -m harness.cli.image build ...``
runs the same commands on their own.
"""

from __future__ import annotations

import argparse
import json
import sys

from harness.docker.containers import ContainerError


def _output_base(ns: argparse.Namespace):
    from harness.folder.experiment import output_base

    return output_base(ns.output_base)



def cmd_build(ns: argparse.Namespace) -> int:
    """Build the image and write image_record.json beside the experiments; prints the record."""
    from harness.docker.image import build_image, ensure_image

    if ns.if_missing:
        record = ensure_image(ns.tag, variant=ns.variant, base_image=ns.base_image, wheelhouse=ns.wheelhouse,
                              output_base=_output_base(ns), progress=not ns.quiet, build_any_tag=True)
        _print_record(record, ns)
        return 0
    record = build_image(variant=ns.variant, base_image=ns.base_image, tag=ns.tag, wheelhouse=ns.wheelhouse,
                         output_base=_output_base(ns), progress=not ns.quiet, nocache=ns.no_cache)
    _print_record(record, ns)
    return 0


def cmd_push(ns: argparse.Namespace) -> int:
    """Push the image to a registry and record its repo digest; prints the record."""
    from harness.docker.image import push_image

    record = push_image(ns.registry, image=ns.image, variant=ns.variant, output_base=_output_base(ns),
                        progress=not ns.quiet)
    _print_record(record, ns)
    return 0


def _print_record(record: dict, ns: argparse.Namespace) -> None:
    if ns.json:
        print(json.dumps(record, indent=2, sort_keys=True))
        return
    print(f"image: {record.get('tag') or record.get('image')}")
    for key in ("image_id", "repo_digest", "base_image", "base_image_digest", "lock_sha256", "git_commit",
                "docker_engine_version", "builder"):
        print(f"  {key}: {record.get(key)}")


def add_image_commands(subparsers) -> None:
    """Register `image build` and `image push` on an argparse subparsers object."""
    kwargs = {}
    parser_class = getattr(subparsers, "_parser_class", None)
    if parser_class is not None:
        kwargs["parser_class"] = parser_class
    image = subparsers.add_parser("image", help="build or push the project's container image")
    image_sub = image.add_subparsers(dest="image_command", required=True, **kwargs)

    build = image_sub.add_parser("build", help="build the image from the hash-locked wheelhouse (never pulls)")
    build.add_argument("--variant", choices=["cpu", "cuda"], default="cpu",
                       help="which lock file: CPU-only torch, or torch with CUDA for GPU hosts (default cpu)")
    build.add_argument("--base-image", "--base_image", dest="base_image", default=None,
                       help="base image by digest or local tag (default: the pinned python:3.11-slim-bookworm, "
                            "else the local debootstrap base)")
    build.add_argument("--tag", default=None, help="image tag (default gainakt-harness:<variant>-<code hash>)")
    build.add_argument("--wheelhouse", default=None, help="wheel folder (default wheelhouse/<variant>)")
    build.add_argument("--no-cache", "--no_cache", dest="no_cache", action="store_true",
                       help="rebuild every layer")
    build.add_argument("--if-missing", "--if_missing", dest="if_missing", action="store_true",
                       help="only build when the tag is not present locally (else just record it)")
    _common(build)
    build.set_defaults(image_handler=_guarded(cmd_build))

    push = image_sub.add_parser("push", help="push the image to a registry and record its repo digest")
    push.add_argument("registry", help="registry and namespace, e.g. ghcr.io/your-lab")
    push.add_argument("--image", default=None, help="local image to push (default: the current code's image)")
    push.add_argument("--variant", choices=["cpu", "cuda"], default="cpu")
    _common(push)
    push.set_defaults(image_handler=_guarded(cmd_push))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output_base", "--output-base", dest="output_base", default=None,
                        help="experiments folder; image_record.json is written there (default examples/experiments)")
    parser.add_argument("--json", action="store_true", help="print the image record as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress display")


def _guarded(handler):
    """Container errors become one line on stderr and exit code 1 (also outside `harness`)."""

    def run(ns: argparse.Namespace) -> int:
        try:
            return handler(ns)
        except ContainerError as exc:
            print(f"harness image {ns.image_command}: error: {exc}", file=sys.stderr)
            return 1

    run.__doc__ = handler.__doc__
    return run


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.cli.image build|push ...`."""
    parser = argparse.ArgumentParser(prog="harness")
    sub = parser.add_subparsers(dest="command", required=True)
    add_image_commands(sub)
    ns = parser.parse_args(["image", *(sys.argv[1:] if argv is None else argv)])
    try:
        return ns.image_handler(ns)
    except KeyboardInterrupt:
        print("harness image: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
