"""Video input/output: probing, streaming reads, atomic streaming writes."""

from .probe import VideoInfo, probe
from .read import FramePlan, VideoStream, iter_video, plan_frames, prefetch, read_video
from .video import Video
from .write import AudioSource, VideoWriter, ffmpeg_exe, write_video

__all__ = ["Video", "VideoInfo", "probe", "FramePlan", "VideoStream", "iter_video", "plan_frames", "prefetch", "read_video",
           "AudioSource", "VideoWriter", "ffmpeg_exe", "write_video"]
