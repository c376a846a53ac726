"""A WHIP publisher built on aiortc (a WebRTC stack Relaycast did not write): streams a media
file to POST <url> with a bearer token, for <seconds>, then ends the session with DELETE.

    python3 whip_publish.py <whip url> <token> <file> <seconds>
"""
import asyncio
import sys

from whip_http import http
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer


async def main(url, token, path, seconds):
    # No STUN: the server answers with its own host candidate.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    player = MediaPlayer(path, loop=True)
    for track in (player.audio, player.video):
        if track is not None:
            pc.addTrack(track)
    await pc.setLocalDescription(await pc.createOffer())  # gathers candidates first
    status, headers, answer = http("POST", url, token, pc.localDescription.sdp.encode())
    assert status == 201, f"WHIP answered {status}"
    location = headers["Location"]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    print(f"publishing, session {location}", flush=True)
    await asyncio.sleep(seconds)
    base = url.split("/whip/")[0]
    status, _, _ = http("DELETE", base + location, token)
    print(f"ended: DELETE answered {status}", flush=True)
    await pc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
