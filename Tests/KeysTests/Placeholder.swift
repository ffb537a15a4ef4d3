import Testing
@testable import Keys
