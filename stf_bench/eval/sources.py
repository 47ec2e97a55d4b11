"""Where each benchmark's dataset lives: hub repo, local folder, config and split. Read by data location
(`data_sources`) and by the sample-data maker (`samples`), which writes the same layout."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """A benchmark's dataset: hub repo (as lmms-eval 0.7.3's YAML names it), local folder, config and split."""

    repo: str
    folder: str
    config: str | None
    split: str
    images_config: str | None = None  # GQA keeps its images in a second config, joined on imageId

    def configs(self) -> list[str | None]:
        """The configs whose `split` files a run needs."""
        return [self.config] + ([self.images_config] if self.images_config else [])


SOURCES: dict[str, Source] = {
    "gqa": Source("lmms-lab-encoder/GQA", "GQA", "testdev_balanced_instructions", "testdev",
                  images_config="testdev_balanced_images"),
    "scienceqa_img": Source("lmms-lab-encoder/ScienceQA", "ScienceQA", "ScienceQA-IMG", "test"),
    "textvqa_val": Source("lmms-lab-encoder/textvqa", "textvqa", None, "validation"),
    "pope": Source("lmms-lab-encoder/POPE", "POPE", None, "test"),
    "mmbench_en_dev": Source("lmms-lab-encoder/MMBench", "MMBench", "en", "dev"),
    "mmbench_cn_dev": Source("lmms-lab-encoder/MMBench", "MMBench", "cn", "dev"),
    "vqav2_val": Source("lmms-lab-encoder/VQAv2", "VQAv2", None, "validation"),
    "vizwiz_vqa_val": Source("lmms-lab-encoder/VizWiz-VQA", "VizWiz-VQA", None, "val"),
    "ocrbench": Source("echo840/OCRBench", "OCRBench", None, "test"),
    "chartqa": Source("lmms-lab-encoder/ChartQA", "ChartQA", None, "test"),
}
