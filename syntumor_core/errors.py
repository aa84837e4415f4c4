"""Typed errors of the core. All are ``ValueError`` so callers can catch them broadly."""


class SynTumorError(ValueError):
    """Base class of every error the core raises for bad input."""


class VolumeError(SynTumorError):
    """A CT volume or label file is unreadable, of the wrong shape, or holds invalid values."""


class DicomError(VolumeError):
    """A DICOM series cannot be assembled into a volume (missing slices, tilt, uneven spacing)."""


class MaskError(SynTumorError):
    """An organ mask is empty, of the wrong shape, or does not match its image."""


class OrganTooSmallError(MaskError):
    """The organ mask has no room for the requested tumor type."""


class ParameterError(SynTumorError):
    """A synthesis or model parameter is out of its allowed range or unknown."""


class ManifestError(SynTumorError):
    """A manifest cannot be replayed (malformed, or made from other input)."""


class SampleNotInstalledError(SynTumorError):
    """A sample data set needs a package that is not installed."""


class CheckpointError(SynTumorError):
    """A model checkpoint is unsafe, corrupt, or of another architecture."""
