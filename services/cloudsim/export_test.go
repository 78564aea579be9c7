package cloudsim

// SetCheckpointHook makes the state store's checkpoint writer call fn after each chunk of
// entities it encodes, without the server's lock, so that a test can hold a checkpoint in
// progress and make calls meanwhile.
func SetCheckpointHook(s *Server, fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.store.afterChunk = fn
}

// WaitCheckpoint waits until the checkpoint being written, if any, is done.
func WaitCheckpoint(s *Server) {
	s.mu.RLock()
	done := s.store.ckptDone
	s.mu.RUnlock()
	if done != nil {
		<-done
	}
}

// CheckpointChunk is how many entities the checkpoint writer encodes per taking of the lock.
const CheckpointChunk = checkpointChunk
