"""
The Go tunnel's frame codec, transcribed by hand from its source
(protocol/message.go: Packetize and Depacketize) for the tests that play a
Go peer: not our codec, so that a shared mistake cannot hide.
"""


def go_packetize(frame_id, message):
    """
    protocol.Packetize: two length bytes, four id bytes, the message.
    """
    n = len(message)
    header = bytes([(n >> 8) & 0xFF, n & 0xFF, (frame_id >> 24) & 0xFF, (frame_id >> 16) & 0xFF,
                    (frame_id >> 8) & 0xFF, frame_id & 0xFF])
    return header + message


def go_depacketize(buffer):
    """
    protocol.Depacketize, applied until the buffer is used up.
    """
    messages = []
    while len(buffer) >= 6:
        n = (buffer[0] << 8) + buffer[1]
        frame_id = (buffer[2] << 24) + (buffer[3] << 16) + (buffer[4] << 8) + buffer[5]
        if n > len(buffer) - 6:
            break
        messages.append((frame_id, bytes(buffer[6 : 6 + n])))
        buffer = buffer[6 + n :]
    return messages, buffer
