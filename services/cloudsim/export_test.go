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

// SetCheckpointMinimum lowers the fewest log records that start a checkpoint when
// CheckpointEvery is 0 (200,000), so that a test sees the size rule with a small world; the
// newest checkpoint's size counts as it did.
func SetCheckpointMinimum(s *Server, records int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.store.minRecords = records
	s.store.due = s.store.dueAfter(s.store.lastEntities)
}

// CheckpointGrowth is how many records per entity of the newest checkpoint make the next one
// due when CheckpointEvery is 0.
const CheckpointGrowth = checkpointGrowth

// CheckpointDue is how many log records start the next checkpoint, and how many the logs hold.
func CheckpointDue(s *Server) (due, records int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.store.due, s.store.records
}
