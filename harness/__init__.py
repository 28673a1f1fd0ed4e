"""harness: empirical studies of self-supervised pre-training at any data scale.

Data flows one way: studies/*.yaml -> spec -> plan -> launch -> job -> results/ -> collect -> analysis.
"""

__version__ = "0.1.0"
