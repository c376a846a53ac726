"""A WHEP viewer built on aiortc: receives a room's broadcast from POST <url> and records what
it gets into <out> (WebM) for <seconds>.

    python3 whep_record.py <whep url> <token> <out.webm> <seconds>
"""
import asyncio
import sys

from whip_http import http
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaBlackhole, MediaRecorder


async def main(url, token, out, seconds):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    # The video goes into the file; the audio is received and counted (aiortc's recorder
    # drops a video track whose frames reach it after the audio's, so they are kept apart).
    recorder = MediaRecorder(out)
    audio_sink = MediaBlackhole()
    tracks = []

    @pc.on("track")
    def on_track(track):
        tracks.append(track.kind)
        (recorder if track.kind == "video" else audio_sink).addTrack(track)

    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    status, headers, answer = http("POST", url, token, pc.localDescription.sdp.encode())
    assert status == 201, f"WHEP answered {status}"
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await recorder.start()
    await audio_sink.start()
    await asyncio.sleep(seconds)
    await recorder.stop()  # without it the file stays empty
    await audio_sink.stop()
    base = url.split("/whep/")[0]
    http("DELETE", base + headers["Location"], token)
    await pc.close()
    print(f"recorded tracks: {','.join(sorted(tracks))}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
