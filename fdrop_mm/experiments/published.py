"""A published checkpoint in place of an arm's ImageNet pretraining (§5.3): pretraining ResNet-50
is a day or more of an 8-GPU node per arm, and a user who trusts e.g. mmpretrain's
``resnet50_8xb32_in1k`` (76.55 top-1) trains only the other arm
(``tools/run_pipeline.py --pretrained baseline=PATH_OR_URL``).

The checkpoint must be an mmpretrain ``ImageClassifier``'s that fits the arm's pretraining
config's model exactly (ResNet-50 and its head): :func:`check_classifier_checkpoint`, before
any stage runs. It is then tested on the user's val split like a trained one and its backbone
extracted; the table names it as ``published checkpoint: <source>``.
"""
import dataclasses
import functools
import hashlib
from pathlib import Path
from typing import Dict, Mapping, Sequence

import torch

from fdrop_mm.checkpoint_files import checkpoint_mismatches, is_local, load_checkpoint_file
from fdrop_mm.transfer import source_model

from .stages import read_config

FETCHED = 'published.pth'  # a URL's checkpoint, as mmengine's loader read it, in the stage folder


@dataclasses.dataclass(frozen=True)
class PublishedCheckpoint:
    """``source``: a local file or a URL that mmengine's ``CheckpointLoader`` reads (``https://``,
    ``open-mmlab://``, ``torchvision://``, ...); ``arm``: the pretraining it replaces."""
    arm: str
    source: str

    @property
    def is_local(self) -> bool:
        return is_local(self.source)

    @property
    def label(self) -> str:
        return f'--pretrained {self.arm}={self.source}'

    def inputs(self) -> dict:
        """What a stage using it is made from: the source and, for a local file, its size and
        sha256, so that another file at the same path reruns the stage."""
        if not self.is_local:
            return dict(source=self.source)
        path = self.local_path()
        stat = path.stat()
        return dict(source=str(path), size=stat.st_size,
                    sha256=file_sha256(path, stat.st_size, stat.st_mtime_ns))

    def local_path(self) -> Path:
        """The local file, absolute; a missing one is an error naming the option."""
        path = Path(self.source).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f'{self.label}: no such file {path}')
        return path

    @functools.cached_property
    def content(self) -> dict:
        """The checkpoint, read once per run (:func:`load_checkpoint_file`; a URL through mmengine's
        ``CheckpointLoader``, cached where torch hub caches)."""
        return load_checkpoint_file(self.local_path() if self.is_local else self.source)

    def fetch(self, work_dir: Path) -> Path:
        """A local file of the checkpoint: the file itself, or the URL's :attr:`content` saved as
        ``work_dir/published.pth``."""
        if self.is_local:
            return self.local_path()
        work_dir.mkdir(parents=True, exist_ok=True)
        path = work_dir / FETCHED
        torch.save(self.content, path)
        return path


@functools.lru_cache(maxsize=None)
def file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    """sha256 of a file, computed once per (path, size, modification time)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def parse_pretrained(values: Sequence[str], arms: Sequence[str]) -> Dict[str, str]:
    """``ARM=PATH_OR_URL`` strings (``--pretrained``) as {arm: source}; ``arms`` are the
    pretrainings that may be replaced. A malformed, unknown or repeated arm is an error."""
    published = {}
    for value in values:
        arm, sep, source = value.partition('=')
        if not sep or not source:
            raise ValueError(f'--pretrained {value!r}: expected ARM=PATH_OR_URL, ARM one of {list(arms)}')
        if arm not in arms:
            raise ValueError(f'--pretrained {value!r}: no pretraining arm {arm!r}, expected one of '
                             f'{list(arms)}')
        if arm in published:
            raise ValueError(f'--pretrained: {arm} given twice ({published[arm]}, {source})')
        published[arm] = source
    return published


def check_classifier_checkpoint(published: PublishedCheckpoint, checkpoint: Path, config: str,
                                env: Mapping[str, str]) -> None:
    """Refuse ``checkpoint`` (``published``'s local file) unless it is an mmpretrain
    ``ImageClassifier``'s whose state fits exactly the model of ``config`` (relative to the
    repository, read under the environment ``env``): ``ValueError`` naming the option, the file
    and what trained it, or the missing, unexpected and mis-shaped keys."""
    loaded = published.content
    trained_as = source_model(loaded, loaded.get('state_dict', loaded))
    if trained_as['type'] is not None and trained_as['type'].split('.')[-1] != 'ImageClassifier':
        raise ValueError(f'{published.label}: {checkpoint} is not an mmpretrain ImageClassifier '
                         f'checkpoint: it was trained as a {trained_as["type"]} (known from its '
                         f'{trained_as["known_from"]})')
    problems = checkpoint_mismatches(classifier(config, env), checkpoint, loaded)
    if problems:
        raise ValueError(f'{published.label}: {checkpoint} does not fit the ResNet-50 '
                         f'ImageClassifier of {config}: ' + '; '.join(problems))


def classifier(config: str, env: Mapping[str, str]) -> torch.nn.Module:
    """``config``'s mmpretrain model, randomly initialised (its state's names and shapes; on the
    CPU: mmpretrain's ResNet cannot be built on the meta device)."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    cfg = read_config(config, env)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg.model)
