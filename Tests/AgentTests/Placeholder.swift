import Testing
@testable import Agent
