"""A tiny dataset folder written whole or not at all, with its ``tiny_data.json`` manifest: a
rerun with the same parameters skips it, one with other parameters is refused unless ``force``.
"""
import json
import shutil


FORMAT_VERSION = 1
MANIFEST = 'tiny_data.json'


class TinyDataError(ValueError):
    """Bad input or an output location the generator must not overwrite."""


def _require_at_least(minimum, **values):
    for name, value in values.items():
        if value < minimum:
            raise TinyDataError(f'{name} must be at least {minimum}, got {value}')


def _require_image_size(field, size, minimum):
    """``size`` as (width, height), each side at least ``minimum`` pixels."""
    width, height = size
    if min(width, height) < minimum:
        raise TinyDataError(f'{field} must be (width, height), each at least {minimum} pixels, '
                            f'got {tuple(size)}')
    return width, height


def _count_files(root):
    return sum(1 for path in root.rglob('*') if path.is_file())


def _read_manifest(root):
    """The manifest at ``root``, or None if there is none."""
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise TinyDataError(f'{path} is not a readable manifest ({err}); '
                            f'delete {root} to regenerate') from err


def _materialize(root, params, force, writer):
    """Build ``root`` with ``writer`` unless it already holds the same, complete dataset.

    The dataset is written into a sibling ``.<name>.partial`` directory and renamed into
    place, manifest included, so ``root`` is either complete or absent.
    """
    if root.exists() and not root.is_dir():
        raise TinyDataError(f'{root} exists and is not a directory')
    manifest = _read_manifest(root) if root.is_dir() else None
    if manifest is None and root.is_dir() and any(root.iterdir()):
        raise TinyDataError(f'{root} is not empty and has no {MANIFEST}: it was not made by '
                            f'this tool, so it is left alone; move it away or pick another --out')
    if manifest is not None and manifest.get('format_version') == FORMAT_VERSION \
            and manifest.get('params') == params:
        if _count_files(root) == manifest.get('num_files'):
            return False
    elif manifest is not None and not force:
        on_disk = dict(manifest.get('params') or {}, format_version=manifest.get('format_version'))
        asked = dict(params, format_version=FORMAT_VERSION)
        differences = ', '.join(f'{key}: {on_disk.get(key)!r} on disk, {asked.get(key)!r} asked'
                                for key in sorted(asked.keys() | on_disk.keys())
                                if on_disk.get(key) != asked.get(key))
        raise TinyDataError(f'{root} was made with other parameters ({differences}); '
                            f'use --force to replace it')
    partial = root.with_name(f'.{root.name}.partial')
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
    except OSError as err:
        raise TinyDataError(f'cannot create {partial}: {err}') from err
    writer(partial)
    num_files = _count_files(partial) + 1  # + the manifest itself
    (partial / MANIFEST).write_text(json.dumps(  # the generator's name as manifests have always recorded it
        dict(generator='fdrop_mm.testing.tiny_data', format_version=FORMAT_VERSION,
             params=params, num_files=num_files), indent=2, sort_keys=True) + '\n')
    if root.is_dir():
        shutil.rmtree(root)
    partial.rename(root)
    return True
