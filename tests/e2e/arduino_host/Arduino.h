// Just enough of the Arduino core to run a sketch on a computer, its Serial on standard input
// and output: hwq's tests build examples/firmware/arduino with it and talk to it over a pty.
#pragma once
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define F(text) (text)
static const int A0 = 0;

inline int analogRead(int) { return 512; }

class HostSerial {
 public:
  void begin(unsigned long) {}
  // Blocks until a byte arrives, so loop() does not spin; the program ends with its input.
  int available() {
    if (has_) return 1;
    ssize_t got = ::read(0, &next_, 1);
    if (got != 1) exit(0);
    has_ = true;
    return 1;
  }
  int read() {
    available();
    has_ = false;
    return next_;
  }
  size_t write(uint8_t byte) { return write(&byte, 1); }
  size_t write(const uint8_t *data, size_t length) {
    size_t done = 0;
    while (done < length) {
      ssize_t n = ::write(1, data + done, length - done);
      if (n <= 0) exit(1);
      done += (size_t)n;
    }
    return length;
  }
  size_t print(const char *text) { return write((const uint8_t *)text, strlen(text)); }
  size_t println(const char *text) { return print(text) + print("\r\n"); }
  size_t println(double value, int digits) {
    char text[64];
    snprintf(text, sizeof text, "%.*f", digits, value);
    return println(text);
  }
 private:
  uint8_t next_ = 0;
  bool has_ = false;
};

inline HostSerial Serial;
