// An hwq device for Arduino boards: answers the line protocol of hwq's scpi simulator and the
// standard command frame (COBS + CRC-16/CCITT-FALSE, hwq's DESIGN §5) on the USB serial port.
//
// Both protocols share the port. A frame ends with 0x00 and its second byte is always 0x01 (the
// frame version, copied by COBS), which no text line holds; a line ends with '\n' and is text.
// The same logic as ../../micropython/main.py, which hwq's tests run against hwq's frame codec.

#include <Arduino.h>

static const unsigned long BAUD = 115200;
static const uint8_t FRAME_VERSION = 0x01;
static const uint8_t MAX_ITEMS = 64;
static const size_t MAX_BUFFER = 1024;  // larger than the largest frame (4 + 256 + 2, COBS'd)
static const uint8_t STATUS_OK = 0;
static const uint8_t STATUS_UNKNOWN_COMMAND = 1;
static const uint8_t CMD_PING = 0;
static const uint8_t CMD_ECHO = 1;
static const uint8_t CMD_SUM = 2;
static const int ANALOG_PIN = A0;

static uint8_t buffer[MAX_BUFFER];
static size_t buffered = 0;

// CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor.
static uint16_t crc16CcittFalse(const uint8_t *data, size_t length) {
  uint16_t crc = 0xFFFF;
  for (size_t i = 0; i < length; i++) {
    crc ^= (uint16_t)data[i] << 8;
    for (uint8_t bit = 0; bit < 8; bit++) {
      crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
  }
  return crc;
}

// Decodes COBS in place; returns the decoded length, or -1 if the bytes are not valid COBS.
static long cobsDecode(uint8_t *data, size_t length) {
  size_t in = 0, out = 0;
  while (in < length) {
    uint8_t code = data[in];
    if (code == 0 || in + code > length) return -1;
    for (uint8_t i = 1; i < code; i++) data[out++] = data[in + i];
    in += code;
    if (code != 0xFF && in < length) data[out++] = 0;
  }
  return (long)out;
}

// Writes `length` bytes COBS-encoded, then the 0x00 that ends the frame.
static void writeCobs(const uint8_t *data, size_t length) {
  size_t start = 0;
  while (true) {
    size_t run = 0;
    while (start + run < length && data[start + run] != 0 && run < 254) run++;
    Serial.write((uint8_t)(run + 1));
    Serial.write(data + start, run);
    start += run;
    if (run == 254) {
      if (start == length) break;
      continue;  // a full block carries no zero
    }
    if (start >= length) break;
    start++;  // the zero this block stood for
    if (start == length) {
      Serial.write((uint8_t)1);  // the data ended with a zero
      break;
    }
  }
  Serial.write((uint8_t)0);
}

static int32_t readInt32(const uint8_t *at) {
  return (int32_t)((uint32_t)at[0] | ((uint32_t)at[1] << 8) | ((uint32_t)at[2] << 16) |
                   ((uint32_t)at[3] << 24));
}

static void putInt32(uint8_t *at, int32_t value) {
  uint32_t bits = (uint32_t)value;
  for (uint8_t i = 0; i < 4; i++) at[i] = (uint8_t)(bits >> (8 * i));
}

static void sendReply(uint8_t seq, uint8_t status, const int32_t *values, uint8_t count) {
  static uint8_t body[4 + 4 * MAX_ITEMS + 2];
  body[0] = FRAME_VERSION;
  body[1] = seq;
  body[2] = status;
  body[3] = count;
  for (uint8_t i = 0; i < count; i++) putInt32(body + 4 + 4 * i, values[i]);
  size_t length = 4 + 4 * (size_t)count;
  uint16_t crc = crc16CcittFalse(body, length);
  body[length] = (uint8_t)(crc & 0xFF);
  body[length + 1] = (uint8_t)(crc >> 8);
  writeCobs(body, length + 2);
}

// One request frame (without its 0x00): answered, or ignored if it is not a valid request.
static void handleFrame(uint8_t *frame, size_t length) {
  long decoded = cobsDecode(frame, length);
  if (decoded < 6) return;
  size_t bodyLength = (size_t)decoded - 2;
  uint16_t crc = (uint16_t)frame[bodyLength] | ((uint16_t)frame[bodyLength + 1] << 8);
  if (crc != crc16CcittFalse(frame, bodyLength)) return;
  uint8_t seq = frame[1], commandId = frame[2], count = frame[3];
  if (frame[0] != FRAME_VERSION || count > MAX_ITEMS || bodyLength != 4 + 4 * (size_t)count) return;
  static int32_t args[MAX_ITEMS];
  for (uint8_t i = 0; i < count; i++) args[i] = readInt32(frame + 4 + 4 * i);
  if (commandId == CMD_PING) {
    sendReply(seq, STATUS_OK, args, 0);
  } else if (commandId == CMD_ECHO) {
    sendReply(seq, STATUS_OK, args, count);
  } else if (commandId == CMD_SUM) {
    uint32_t sum = 0;  // wraps like int32 on the host side
    for (uint8_t i = 0; i < count; i++) sum += (uint32_t)args[i];
    int32_t total = (int32_t)sum;
    sendReply(seq, STATUS_OK, &total, 1);
  } else {
    sendReply(seq, STATUS_UNKNOWN_COMMAND, args, 0);
  }
}

static bool isText(const uint8_t *data, size_t length) {
  if (length == 0) return false;
  for (size_t i = 0; i < length; i++) {
    if ((data[i] < 32 || data[i] >= 127) && data[i] != '\t') return false;
  }
  return true;
}

// One line command, as hwq's scpi simulator answers it.
static void handleLine(const char *line) {
  if (strcmp(line, "*IDN?") == 0) {
    Serial.println(F("HWQ,FW,arduino,0.1"));
  } else if (strncmp(line, "ECHO ", 5) == 0) {
    Serial.println(line + 5);
  } else if (strcmp(line, "MEAS:VOLT?") == 0) {
    Serial.println(analogRead(ANALOG_PIN) * 5.0 / 1023.0, 6);
  } else {
    Serial.print(F("ERR unknown command: "));
    Serial.println(line);
  }
}

static void feed(uint8_t byte) {
  if (byte == 0) {
    handleFrame(buffer, buffered);
    buffered = 0;
    return;
  }
  if (byte == '\n') {
    size_t start = 0, end = buffered;
    while (start < end && (buffer[start] == '\r' || buffer[start] == '\n')) start++;
    if (end > start && buffer[end - 1] == '\r') end--;
    if (isText(buffer + start, end - start)) {
      buffer[end] = 0;
      handleLine((const char *)buffer + start);
      buffered = 0;
      return;
    }
  }
  if (buffered == MAX_BUFFER - 1) buffered = 0;  // noise with no end: start again
  buffer[buffered++] = byte;
}

void setup() {
  Serial.begin(BAUD);
}

void loop() {
  while (Serial.available() > 0) feed((uint8_t)Serial.read());
}
