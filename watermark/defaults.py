"""The watermark defaults that callers name before anything is embedded or detected (CLI
options, configs), in a module without torch so that naming them starts fast."""

#: Anyone can detect marks made with the default key; use your own key for marks that only
#: you can find (and that nobody can forge without it).
DEFAULT_KEY = "aigc-guard-public"

#: Default decision threshold: a p-value at or below this is a detection. Aimed at one false
#: positive per million unmarked images per key; the measured rate ships in data/.
DEFAULT_P_THRESHOLD = 1e-6

#: What ``embed``, ``detect`` and the ``aigc watermark`` commands use unless told otherwise:
#: the mark that survives JPEG, resizing, crops and rotation.
DEFAULT_METHOD = "tilemark"
