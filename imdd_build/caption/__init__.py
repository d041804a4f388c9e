"""Caption drafting: the offline template captioner (and, later, LLM drafting)."""

from .template import TEMPLATE_VERSION, caption_workspace, template_caption, word_count

__all__ = ["TEMPLATE_VERSION", "caption_workspace", "template_caption", "word_count"]
