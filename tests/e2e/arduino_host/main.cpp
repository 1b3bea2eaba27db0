// Runs an Arduino sketch's setup() once and loop() for ever, as the board's core does.
void setup();
void loop();

int main() {
  setup();
  for (;;) loop();
}
