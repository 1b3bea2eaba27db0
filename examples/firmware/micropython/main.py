"""An hwq device in MicroPython: answers the line protocol of hwq's scpi simulator and the
standard command frame (COBS + CRC-16/CCITT-FALSE), on the board's USB serial (the REPL port).

Copy it to the board as main.py (README.md beside it). It runs unchanged under CPython with
its standard input and output on a serial port or a pseudo-terminal, which is how hwq's tests
check it against hwq's own frame codec, an independent implementation.

Both protocols share the port. A frame ends with 0x00 and its second byte is always 0x01 (the
frame version, copied by COBS), which no text line holds; a line ends with \\n and is text.
"""

import struct
import sys

try:  # MicroPython only: Ctrl-C (0x03) may sit inside a frame; it must not stop the program.
    import micropython

    micropython.kbd_intr(-1)
except ImportError:
    pass

try:  # MicroPython boards with an ADC on pin 26 (Raspberry Pi Pico); elsewhere a fixed value.
    import machine

    _adc = machine.ADC(26)
except (ImportError, AttributeError, ValueError, TypeError):
    _adc = None

IDENTITY = "HWQ,FW," + sys.implementation.name + ",0.1"
FRAME_VERSION = 0x01
MAX_ITEMS = 64
MAX_BUFFER = 1024
STATUS_OK = 0
STATUS_UNKNOWN_COMMAND = 1
STATUS_BAD_ARGS = 2
CMD_PING = 0
CMD_ECHO = 1
CMD_SUM = 2


def crc16_ccitt_false(data):
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def cobs_encode(data):
    """COBS: no 0x00 in the result; the caller adds the 0x00 that ends the frame."""
    out = bytearray()
    block = bytearray()
    for byte in data:
        if byte == 0:
            out.append(len(block) + 1)
            out.extend(block)
            block = bytearray()
        else:
            block.append(byte)
            if len(block) == 254:
                out.append(255)
                out.extend(block)
                block = bytearray()
    out.append(len(block) + 1)
    out.extend(block)
    return bytes(out)


def cobs_decode(data):
    """Undo COBS; None if the bytes are not valid COBS."""
    out = bytearray()
    index = 0
    while index < len(data):
        code = data[index]
        end = index + code
        if code == 0 or end > len(data):
            return None
        out.extend(data[index + 1 : end])
        index = end
        if code != 255 and index < len(data):
            out.append(0)
    return bytes(out)


def parse_request(frame):
    """(seq, command_id, args) of a request frame, or None if it is not a valid one."""
    raw = cobs_decode(frame)
    if raw is None or len(raw) < 6:
        return None
    body = raw[:-2]
    if struct.unpack("<H", raw[-2:])[0] != crc16_ccitt_false(body):
        return None
    version, seq, command_id, count = body[0], body[1], body[2], body[3]
    if version != FRAME_VERSION or count > MAX_ITEMS or len(body) != 4 + 4 * count:
        return None
    args = [struct.unpack("<i", body[4 + 4 * i : 8 + 4 * i])[0] for i in range(count)]
    return seq, command_id, args


def reply_frame(seq, status, values):
    """The wire bytes of a reply, its 0x00 included."""
    body = bytes([FRAME_VERSION, seq, status, len(values)])
    for value in values:
        body += struct.pack("<i", value)
    return cobs_encode(body + struct.pack("<H", crc16_ccitt_false(body))) + b"\x00"


def wrap_int32(value):
    value &= 0xFFFFFFFF
    return value - 0x100000000 if value & 0x80000000 else value


def answer_frame(command_id, args):
    """Status and values answering one request."""
    if command_id == CMD_PING:
        return STATUS_OK, []
    if command_id == CMD_ECHO:
        return STATUS_OK, args
    if command_id == CMD_SUM:
        return STATUS_OK, [wrap_int32(sum(args))]
    return STATUS_UNKNOWN_COMMAND, []


def measure_volts():
    if _adc is None:
        return 1.234
    return _adc.read_u16() * 3.3 / 65535


def answer_line(line):
    """The reply to one line command, as the scpi simulator answers."""
    if line == "*IDN?":
        return IDENTITY
    if line.startswith("ECHO "):
        return line[5:]
    if line == "MEAS:VOLT?":
        return f"{measure_volts():.6f}"
    return "ERR unknown command: " + line


def is_text(data):
    return bool(data) and all(32 <= byte < 127 or byte == 9 for byte in data)


class Device:
    """Reads bytes, answers each complete frame or line."""

    def __init__(self, read_byte, write):
        self.read_byte = read_byte
        self.write = write
        self.buffer = bytearray()

    def feed(self, byte):
        if byte == 0:
            request = parse_request(bytes(self.buffer))
            self.buffer = bytearray()
            if request is not None:  # not the answer to anything: say nothing
                seq, command_id, args = request
                status, values = answer_frame(command_id, args)
                self.write(reply_frame(seq, status, values))
            return
        if byte == 10:  # \n
            text = bytes(self.buffer).lstrip(b"\r\n").rstrip(b"\r")
            if is_text(text):
                self.buffer = bytearray()
                self.write((answer_line(text.decode()) + "\n").encode())
                return
        self.buffer.append(byte)
        if len(self.buffer) > MAX_BUFFER:  # noise with no end: start again
            self.buffer = bytearray()

    def run(self):
        while True:
            chunk = self.read_byte()
            if not chunk:
                return
            self.feed(chunk[0])


def main():
    stdin = getattr(sys.stdin, "buffer", sys.stdin)
    stdout = getattr(sys.stdout, "buffer", sys.stdout)

    def write(data):
        stdout.write(data)
        if hasattr(stdout, "flush"):
            stdout.flush()

    Device(lambda: stdin.read(1), write).run()


if __name__ == "__main__":
    main()
