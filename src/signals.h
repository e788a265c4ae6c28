// SIGINT/SIGTERM during training: the first asks the loop to stop after the current step (it then
// writes a checkpoint); the second exits at once. Checkpoint writes are atomic, so neither corrupts one.
#pragma once

namespace s2s {

void install_stop_handlers();
bool stop_requested();
int stop_signal();        // the signal that asked, 0 if none
void reset_stop_request();  // for tests

}  // namespace s2s
